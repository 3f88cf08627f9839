"""Launch a recipe: recipe -> cluster -> Ray job -> ledger, and control runs afterwards.

`launch(recipe, ...)` is what `rayctl launch`, `rayctl schedule run` and tests call.
The run's ledger row moves pending -> provisioning -> running -> succeeded | failed |
interrupted | stopped (or `serving` for a Serve app that keeps running). Whatever
happens, the row ends in a final status with a reason, and a Ctrl-C (or SIGTERM)
stops the job before `Interrupted` (exit 130) is raised.

Targets:
- `local`: the rayctl-owned head (providers/local.py), started or reused; it stays up
  after the job (starting one costs 10-20 s), `rayctl down` stops it.
- `http(s)://host:8265`: an existing cluster; rayctl only submits there.
- `cloud`: `rayctl.providers.skypilot.launch_cloud` (the cloud provider).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import jobs
from .catalog import rayctl_home
from .errors import InputError, Interrupted, JobFailed, RayctlError
from .ledger import FINAL, Ledger, new_run_id

TARGET_RE = re.compile(r"^(local|cloud|https?://\S+)$")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LIVE = ("pending", "provisioning", "running", "serving")


# ---------------------------------------------------------------------------- what the user sees


class Reporter:
    """Plain, log-friendly output (cron, CI, pipes). The CLI passes a rich one on a terminal.

    Status lines go to stderr with a timestamp, the job's own output to stdout; `quiet`
    keeps only warnings (and the CLI's final summary).
    """

    PROGRESS_EVERY_S = 5.0

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._last_progress = 0.0

    def _err(self, msg: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} rayctl: {msg}\n")
        sys.stderr.flush()

    def stage(self, msg: str) -> None:
        if not self.quiet:
            self._err(msg)

    def job_status(self, status: str, run_id: str) -> None:
        if not self.quiet:
            self._err(f"job {run_id} is {status}")

    def log_line(self, line: str) -> None:
        if not self.quiet:
            sys.stdout.write((line if sys.stdout.isatty() else ANSI_RE.sub("", line)) + "\n")
            sys.stdout.flush()

    def progress(self, ev: dict) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        done, total = ev.get("done"), ev.get("total")
        final = total is not None and done is not None and done >= total
        if not final and now - self._last_progress < self.PROGRESS_EVERY_S:
            return
        self._last_progress = now
        self._err(f"progress: {format_progress(ev)}")

    def metrics(self, metrics: dict) -> None:
        pass

    def warn(self, msg: str) -> None:
        sys.stderr.write(f"rayctl: warning: {msg}\n")
        sys.stderr.flush()

    def close(self) -> None:
        pass


def format_progress(ev: dict) -> str:
    unit = ev.get("unit", "steps")
    done, total = ev.get("done"), ev.get("total")
    s = f"{unit} {_n(done)}" + (f"/{_n(total)}" if total else "")
    if total:
        s += f" ({100.0 * done / total:.0f}%)"
    if ev.get("message"):
        s += f" {ev['message']}"
    return s


def _n(x) -> str:
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.2f}"
    return f"{int(x):,}" if isinstance(x, (int, float)) else str(x)


# ---------------------------------------------------------------------------- launch


def check_target(target: str, where: str = "--target") -> str:
    if not isinstance(target, str) or not TARGET_RE.match(target):
        raise InputError(f"{where}: '{target}' is not a target; use local, cloud, or an existing Ray "
                         "cluster's dashboard address such as http://head:8265")
    return target.rstrip("/") if target.startswith("http") else target


def launch(recipe, *, target: str | None = None, detach: bool = False, quiet: bool = False,
           ledger: Ledger | None = None, schedule: str | None = None, catalog=None,
           reporter: Reporter | None = None) -> dict:
    """Run `recipe` and return its final ledger row (or the live row with `detach`).

    Raises InputError (2) for bad input, JobFailed (1) when the job fails or is stopped,
    Interrupted (130) on Ctrl-C/SIGTERM, RayctlError (1) when the cluster cannot start.
    """
    target = check_target(target or recipe.target, "--target" if target else f"{recipe.path}: field 'target'")
    rep = reporter or Reporter(quiet=quiet)
    own_ledger = ledger is None
    led = ledger or Ledger()
    try:
        with _sigterm_as_interrupt():
            if target == "cloud":
                return _launch_cloud(recipe, led, rep, detach=detach, quiet=quiet, schedule=schedule,
                                     catalog=catalog)
            return _launch_ray(recipe, target, led, rep, detach=detach, schedule=schedule)
    finally:
        rep.close()
        if own_ledger:
            led.close()


def _launch_ray(recipe, target: str, led: Ledger, rep: Reporter, *, detach: bool, schedule: str | None) -> dict:
    from . import workloads

    local = target == "local"
    run_id = new_run_id(recipe.name)
    if local:
        recipe = _fit_local_gpus(recipe, rep)
    spec = workloads.job_spec(recipe, run_id)  # bad workload input fails here, before anything starts
    logs_dir = rayctl_home() / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = logs_dir / f"{run_id}.log"
    led.start_run(run_id=run_id, recipe=recipe.name, kind=recipe.kind, target=target, status="pending",
                  recipe_path=str(Path(recipe.path).resolve()) if recipe.path else None,
                  recipe_sha256=recipe.sha256, schedule=schedule or recipe.schedule, log_path=str(log_path),
                  nodes=1, hourly_usd=0.0, spot=False)
    try:
        rep.stage(f"run {run_id} ({recipe.kind} '{recipe.name}') on {target}")
        led.update(run_id, status="provisioning")
        if local:
            from .providers import local as local_provider

            cpus = int(-(-recipe.resources.cpus.value // 1)) if recipe.resources.cpus else None
            cluster = local_provider.ensure_cluster(cpus=cpus, status=rep.stage)
            for w in cluster.warnings:
                rep.warn(w)
            rep.stage(f"local Ray cluster {'reused' if cluster.reused else 'started'} at {cluster.address}")
            address, extra_env = cluster.address, cluster.env
            led.update(run_id, cluster="local", cloud="local", instance_type=f"local-{cluster.num_cpus}cpu",
                       ray_address=address)
            led.open_segment(run_id, cloud="local", instance_type=f"local-{cluster.num_cpus}cpu", nodes=1,
                             hourly_usd_per_node=0.0)
        else:
            address, extra_env = target, {}
            v = jobs.probe(address)
            rep.stage(f"Ray {v.get('ray_version', '?')} cluster at {address}")
            led.update(run_id, cluster=address, ray_address=address)
            led.open_segment(run_id, cloud=None, nodes=1, hourly_usd_per_node=0.0)
    except KeyboardInterrupt:
        _finish_once(led, run_id, "interrupted", "interrupted (Ctrl-C or SIGTERM) while the cluster was starting")
        raise Interrupted(f"run {run_id} interrupted before its job was submitted") from None
    except RayctlError as e:
        _finish_once(led, run_id, "failed", str(e).splitlines()[0][:500])
        raise
    except BaseException as e:
        _finish_once(led, run_id, "failed", f"internal error: {type(e).__name__}: {e}"[:500])
        raise
    return run_job(led, run_id, address, spec, reporter=rep, detach=detach, extra_env=extra_env,
                   time_limit=recipe.budget.max_hours * 3600 if recipe.budget.max_hours else None,
                   recipe_name=recipe.name)


def run_job(led: Ledger, run_id: str, address: str, spec, *, reporter: Reporter | None = None,
            detach: bool = False, extra_env: dict | None = None, time_limit: float | None = None,
            recipe_name: str = "") -> dict:
    """Submit `spec` to the Ray cluster at `address` as run `run_id`'s job, follow it, record it.

    The run's ledger row must exist (with `log_path`); the cluster must be up. This is
    the part every target shares: the local head, an existing cluster, a cloud head.
    Returns the final row (or the live one: `running` with `detach`, `serving` for a
    detached Serve app). On any exit the row is final and the job is not left running:
    JobFailed (1) failed/stopped, Interrupted (130), InputError (2), RayctlError (1).
    """
    rep = reporter or Reporter()
    log_path = led.get(run_id).get("log_path") or str(rayctl_home() / "logs" / f"{run_id}.log")
    cl = None
    job_id = None
    report = jobs.Report()
    log = None
    try:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8", errors="replace")
        cl = jobs.client(address)
        busy_hint = _busy_hint(led, address, run_id)
        for w in jobs.check_resources(address, spec.needs_cpus, spec.needs_gpus, busy_hint=busy_hint):
            rep.warn(w)
        if led.get(run_id)["status"] in FINAL:  # `rayctl stop` got here first
            raise JobFailed(f"run {run_id} was stopped before its job was submitted")
        env = {**(extra_env or {}), "RAYCTL_RUN_ID": run_id}
        meta = {"rayctl_run_id": run_id, "rayctl_recipe": recipe_name, "rayctl_detached": int(spec.detached)}
        job_id = jobs.submit(cl, spec, run_id, extra_env=env, metadata=meta)
        led.update(run_id, status="running", ray_job_id=job_id, ray_address=address)
        rep.stage(f"submitted Ray job {job_id} (logs: {log_path})")
        if detach:
            rep.stage(f"detached; follow with `rayctl logs {run_id} --follow`, stop with `rayctl stop {run_id}`")
            return led.get(run_id)

        last_metrics_write = [0.0]

        def on_line(line: str) -> None:
            log.write(ANSI_RE.sub("", line) + "\n")
            log.flush()
            ev = report.feed(line)
            if ev is None:
                rep.log_line(line)
            elif ev["type"] == "progress":
                rep.progress(ev)
            else:
                rep.metrics(dict(report.metrics))
                now = time.monotonic()
                if now - last_metrics_write[0] > 1.0:
                    last_metrics_write[0] = now
                    led.update(run_id, **report.ledger_fields())

        outcome = jobs.follow(cl, job_id, on_line=on_line, on_status=lambda st, _m: rep.job_status(st, job_id),
                              on_warning=rep.warn, time_limit=time_limit, address=address, busy_hint=busy_hint)
        fields = report.ledger_fields()
        if outcome.status == "SUCCEEDED":
            if spec.detached:
                led.update(run_id, status="serving", **fields)
                return led.get(run_id)
            return led.finish(run_id, "succeeded", **fields)
        if outcome.status == "STOPPED":
            led.finish(run_id, "stopped", reason="the job was stopped (rayctl stop, or from Ray)", **fields)
            raise JobFailed(f"run {run_id} was stopped before it finished")
        reason = jobs.failure_reason(outcome.message, outcome.last_lines)
        led.finish(run_id, "failed", reason=reason, **fields)
        raise JobFailed(f"run {run_id} failed: {reason}\nlogs: {log_path} (or `rayctl logs {run_id}`)")
    except KeyboardInterrupt:
        with _no_interrupts():
            rep.stage("interrupted; stopping the job" if job_id else "interrupted")
            final = None
            if cl is not None and job_id is not None:
                try:
                    final = jobs.stop(cl, job_id)
                except Exception as e:  # noqa: BLE001 - still record the interruption
                    rep.warn(f"could not stop Ray job {job_id}: {e}")
            _finish_once(led, run_id, "interrupted",
                         "interrupted (Ctrl-C or SIGTERM)" + (f"; {jobs.stopped_words(final)}" if final else ""),
                         **report.ledger_fields())
        raise Interrupted(f"run {run_id} interrupted" + (f"; its job was stopped ({jobs.stopped_words(final)})"
                                                        if final else "")) from None
    except RayctlError as e:
        if cl is not None and job_id is not None and not isinstance(e, JobFailed) \
                and not getattr(e, "job_stopped", False):
            with contextlib.suppress(Exception):
                jobs.stop(cl, job_id)  # do not leave a job running that nobody follows
        _finish_once(led, run_id, "failed", str(e).splitlines()[0][:500], **report.ledger_fields())
        raise
    except BaseException as e:
        if cl is not None and job_id is not None:
            with contextlib.suppress(Exception):
                jobs.stop(cl, job_id)
        _finish_once(led, run_id, "failed", f"internal error: {type(e).__name__}: {e}"[:500])
        raise
    finally:
        if log is not None:
            log.close()


def _finish_once(led: Ledger, run_id: str, status: str, reason: str, **fields) -> None:
    with contextlib.suppress(KeyError):
        if led.get(run_id)["status"] not in FINAL:
            led.finish(run_id, status, reason=reason, **fields)


def _busy_hint(led: Ledger, address: str, run_id: str) -> str:
    live = [r for r in led.runs(status=("running", "serving")) if r.get("ray_address") == address
            and r["id"] != run_id]
    if not live:
        return ""
    names = ", ".join(f"{r['id']} ({r['status']})" for r in live[:5])
    return f" (rayctl runs on it: {names})"


def _fit_local_gpus(recipe, rep: Reporter):
    """On a machine without GPUs, a recipe's accelerators become a warning and the run uses CPUs."""
    if not recipe.resources.accelerators or local_gpus() > 0:
        return recipe
    want = ", ".join(str(a) for a in recipe.resources.accelerators)
    rep.warn(f"the recipe asks for {want} but this machine has no GPU; the local target runs it on CPU "
             "(use target: cloud for GPUs)")
    return dataclasses.replace(recipe, resources=dataclasses.replace(recipe.resources, accelerators=()))


def local_gpus() -> int:
    """GPUs the local cluster has (or would have): from the running head, else nvidia-smi."""
    from .providers import local as local_provider

    state = local_provider.read_state()
    if state is not None and local_provider.healthy(state):
        res = jobs.cluster_resources(state.address, timeout=3.0)
        if res is not None:
            return int(res.get("GPU", (0, 0))[1])
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for ln in out.splitlines() if ln.startswith("GPU "))


def _launch_cloud(recipe, led: Ledger, rep: Reporter, *, detach: bool, quiet: bool, schedule, catalog) -> dict:
    try:
        from .providers import skypilot
    except ModuleNotFoundError as e:
        if e.name not in ("rayctl.providers.skypilot",):
            raise InputError(f"the cloud target needs {e.name}: pip install 'rayctl[cloud]'") from None
        raise InputError("the cloud target is not available in this rayctl (rayctl.providers.skypilot is "
                         "missing); use target: local or an existing cluster's http://HEAD:8265") from None
    from . import catalog as catalog_mod
    from . import planner

    from . import preemption

    cat = catalog if isinstance(catalog, catalog_mod.Catalog) else catalog_mod.load(catalog)
    catalog_mod.warn_stale_once(cat, rep.warn)  # the plan below names the source and date too
    hist = preemption.history()  # spot offers ranked by effective $/h once the ledger has history
    plan = planner.plan(recipe, cat, rate_fn=hist.rate_fn(recipe.resources.nodes) if hist.any else None)
    run_id = new_run_id(recipe.name)
    logs_dir = rayctl_home() / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    led.start_run(run_id=run_id, recipe=recipe.name, kind=recipe.kind, target="cloud", status="pending",
                  recipe_path=str(Path(recipe.path).resolve()) if recipe.path else None,
                  recipe_sha256=recipe.sha256, schedule=schedule or recipe.schedule,
                  log_path=str(logs_dir / f"{run_id}.log"), nodes=recipe.resources.nodes)
    try:
        row = skypilot.launch_cloud(recipe, plan, led, run_id, detach=detach, quiet=quiet)
    except KeyboardInterrupt:
        _finish_once(led, run_id, "interrupted", "interrupted (Ctrl-C or SIGTERM)")
        raise Interrupted(f"run {run_id} interrupted") from None
    except RayctlError as e:
        _finish_once(led, run_id, "failed", str(e).splitlines()[0][:500])
        raise
    except BaseException as e:
        _finish_once(led, run_id, "failed", f"internal error: {type(e).__name__}: {e}"[:500])
        raise
    return row if isinstance(row, dict) else led.get(run_id)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (cron timeouts, CI cancels, `kill`) takes the same path as Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _no_interrupts():
    """Cleanup after an interrupt runs to its end (it is bounded by timeouts)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


# ---------------------------------------------------------------------------- runs afterwards


def get_run(led: Ledger, run: str) -> dict:
    try:
        return led.get(run)
    except KeyError:
        matches = [r["id"] for r in led.runs(limit=2000) if r["id"].startswith(run)]
        if len(matches) > 1:
            raise InputError(f"'{run}' matches {len(matches)} runs ({', '.join(matches[:4])}"
                             f"{', ...' if len(matches) > 4 else ''}); give more of the id") from None
        raise InputError(f"no run '{run}' in the ledger ({led.path}); `rayctl runs` lists them") from None


def _client_or_none(address: str | None):
    if not address:
        return None
    try:
        jobs.probe(address, timeout=3.0)
    except InputError:
        return None
    return jobs.client(address)


def _cluster_gone(row: dict) -> bool:
    """True when the run's cluster was the local one and that head is no longer the one it ran on."""
    if row.get("cluster") != "local":
        return False
    from .providers import local as local_provider

    state = local_provider.read_state()
    return state is None or state.address != row.get("ray_address") or not local_provider.healthy(state)


def _metrics_url(row: dict) -> str | None:
    m = row.get("metrics") or {}
    if m.get("metrics_url"):
        return m["metrics_url"]
    return m["url"].rstrip("/") + "/-/rayctl/metrics" if m.get("url") else None


def serve_metrics(url: str, timeout: float = 3.0) -> dict | None:
    """The Serve app's counters from its `/-/rayctl/metrics` URL, or None when it does not answer."""
    try:
        doc = jobs._get(url, "", timeout)
    except Exception:  # noqa: BLE001 - an app that is gone or does not count
        return None
    return doc if isinstance(doc, dict) else None


def _serve_fields(row: dict, counters: dict) -> dict:
    metrics = dict(row.get("metrics") or {})
    metrics.update({f"serve_{k}": v for k, v in counters.items()})
    out = {"metrics": metrics}
    for k in ("input_tokens", "output_tokens"):
        if isinstance(counters.get(k), (int, float)):
            out[k] = int(counters[k])
    return out


def refresh(led: Ledger, run: str) -> dict:
    """The run's row brought up to date from its cluster (job status, metrics, Serve counters)."""
    row = get_run(led, run)
    rid = row["id"]
    if row["status"] not in LIVE:
        return row
    if row["target"] == "cloud":
        try:
            from .providers import skypilot
        except ModuleNotFoundError:
            return row  # cloud extras not installed here: the ledger row is all we know
        return skypilot.status_run(led, rid)  # also enforces the budget and reads Serve counters
    if row["status"] == "serving":
        url = _metrics_url(row)
        counters = serve_metrics(url) if url else None
        if counters is not None:
            led.update(rid, **_serve_fields(row, counters))
        elif _cluster_gone(row):
            led.finish(rid, "stopped", reason="its local Ray cluster was stopped")
        return led.get(rid)
    if not row.get("ray_job_id"):
        return row
    cl = _client_or_none(row.get("ray_address"))
    if cl is None:
        if _cluster_gone(row):
            return led.finish(rid, "failed", reason="its local Ray cluster is gone (rayctl down, or a reboot)")
        return row
    try:
        info = cl.get_job_info(row["ray_job_id"])
    except RuntimeError:
        return row
    st = getattr(info.status, "value", str(info.status))
    if st not in jobs.TERMINAL:
        return row
    text = cl.get_job_logs(row["ray_job_id"])
    report = jobs.Report()
    for ln in text.splitlines():
        report.feed(ln)
    lp = Path(row["log_path"]) if row.get("log_path") else None
    if lp is not None and (not lp.exists() or lp.stat().st_size == 0):
        lp.parent.mkdir(parents=True, exist_ok=True)
        lp.write_text(ANSI_RE.sub("", text))
    fields = report.ledger_fields()
    if led.get(rid)["status"] in FINAL:  # the attached launch finished it meanwhile
        return led.get(rid)
    if st == "SUCCEEDED":
        if (info.metadata or {}).get("rayctl_detached") == "1":
            led.update(rid, status="serving", **fields)
            return led.get(rid)
        return led.finish(rid, "succeeded", **fields)
    if st == "STOPPED":
        return led.finish(rid, "stopped", reason="the job was stopped (rayctl stop, or from Ray)", **fields)
    return led.finish(rid, "failed", reason=jobs.failure_reason(info.message, text.splitlines()[-50:]), **fields)


def stop_run(led: Ledger, run: str) -> dict:
    """Stop a run: its Ray job, or its Serve app; the row ends `stopped`."""
    row = refresh(led, run)
    rid = row["id"]
    if row["status"] in FINAL:
        return row
    if row["target"] == "cloud":
        try:
            from .providers import skypilot
        except ModuleNotFoundError:
            raise InputError(f"run {rid} ran on the cloud target, which this rayctl cannot reach") from None
        return skypilot.stop_run(led, rid)
    if row["status"] == "serving":
        url = _metrics_url(row)
        counters = serve_metrics(url) if url else None
        fields = _serve_fields(row, counters) if counters else {}
        cl = _client_or_none(row.get("ray_address"))
        if cl is not None:
            _shutdown_serve(cl, row, led)
        return led.finish(rid, "stopped", reason="stopped by rayctl stop", **fields)
    if not row.get("ray_job_id"):
        return led.finish(rid, "stopped", reason="stopped by rayctl stop before its job was submitted")
    cl = _client_or_none(row.get("ray_address"))
    if cl is None:
        raise RayctlError(f"cannot reach the Ray cluster at {row.get('ray_address')} to stop run {rid}")
    final = jobs.stop(cl, row["ray_job_id"])
    row = refresh(led, rid)
    if row["status"] not in FINAL:
        row = led.finish(rid, "stopped", reason=f"stopped by rayctl stop ({jobs.stopped_words(final)})")
    elif row["status"] == "stopped":
        led.update(rid, reason="stopped by rayctl stop")
        row = led.get(rid)
    return row


def _shutdown_serve(cl, row: dict, led: Ledger) -> None:
    """Delete the run's Serve app (and Serve itself when no other app is left)."""
    try:
        info = cl.get_job_info(row["ray_job_id"])
        app = (info.metadata or {}).get("serve_app")
    except Exception:  # noqa: BLE001
        app = None
    if app:
        code = ("import ray; from ray import serve; ray.init(); "
                f"serve.delete({app!r}); "
                "serve.shutdown() if not serve.status().applications else None")
    else:
        others = [r["id"] for r in led.runs(status=("serving",))
                  if r.get("ray_address") == row.get("ray_address") and r["id"] != row["id"]]
        if others:
            raise RayctlError(f"run {row['id']} did not say which Serve app it deployed, and other runs serve on "
                              f"the same cluster ({', '.join(others)}); shutting Serve down would stop them too. "
                              "Stop them first, or delete the app with Ray's `serve` CLI")
        code = "import ray; from ray import serve; ray.init(); serve.shutdown()"
    import shlex

    sid = f"{row['id']}-stop-{int(time.time())}"
    try:
        cl.submit_job(entrypoint=f"python -c {shlex.quote(code)}", submission_id=sid,
                      metadata={"rayctl_run_id": row["id"], "rayctl_action": "serve-stop"})
    except RuntimeError as e:
        raise RayctlError(f"could not stop the Serve app of run {row['id']}: {e}") from None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if jobs.status_of(cl, sid) in jobs.TERMINAL:
            return
        time.sleep(0.3)
    raise RayctlError(f"stopping the Serve app of run {row['id']} did not finish within 60 s (Ray job {sid})")


def down(led: Ledger, cluster: str = "local") -> dict | None:
    """Stop a cluster rayctl started: its runs end `stopped`, then its processes go."""
    if cluster.startswith("http://") or cluster.startswith("https://"):
        raise InputError(f"{cluster} is an existing cluster rayctl did not start; rayctl never stops it "
                         "(`rayctl stop RUN` stops a run there)")
    if cluster != "local":
        try:
            from .providers import skypilot
        except ModuleNotFoundError:
            raise InputError(f"no cluster '{cluster}': rayctl knows 'local' (the cloud target is not "
                             "available in this rayctl)") from None
        return skypilot.down_cluster(led, cluster)
    from .providers import local as local_provider

    state = local_provider.read_state()
    stopped_runs = []
    live = [r for r in led.runs(status=LIVE) if r.get("cluster") == "local"]
    if state is not None and local_provider.healthy(state):
        cl = None
        for r in live:
            if r.get("ray_address") != state.address:
                continue
            if r["status"] == "serving":
                url = _metrics_url(r)
                counters = serve_metrics(url) if url else None
                if counters:
                    led.update(r["id"], **_serve_fields(r, counters))
            elif r.get("ray_job_id"):
                cl = cl or _client_or_none(state.address)
                if cl is not None:
                    with contextlib.suppress(Exception):
                        jobs.stop(cl, r["ray_job_id"], wait=10)
    result = local_provider.stop_cluster()
    for r in live:
        if led.get(r["id"])["status"] not in FINAL:
            led.finish(r["id"], "stopped", reason="rayctl down stopped the local Ray cluster")
            stopped_runs.append(r["id"])
    if result is None and not stopped_runs:
        return None
    return {**(result or {"name": "local"}), "runs_stopped": stopped_runs}
