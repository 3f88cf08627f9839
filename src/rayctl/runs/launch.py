"""Launch a recipe: recipe -> cluster -> Ray job -> ledger, and control runs afterwards.

`launch(recipe, ...)` is what `rayctl launch`, `rayctl schedule run` and tests call.
The run's ledger row moves pending -> provisioning -> (queued ->) running -> succeeded |
failed | interrupted | stopped | lost (or `serving` for a Serve app that keeps running). Whatever
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
from .. import protocol
from ..settings import rayctl_home
from ..errors import InputError, Interrupted, JobFailed, RayctlError
from ..ledger import FINAL, Ledger, new_run_id

TARGET_RE = re.compile(r"^(local|cloud|https?://\S+)$")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LIVE = ("pending", "provisioning", "queued", "running", "serving")


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
    """The target, checked: local, cloud, or a dashboard URL (which may carry `user:pw@`).

    The URL is returned as given (the credentials are needed to connect); store and print
    `shown_target(target)` instead.
    """
    if not isinstance(target, str) or not TARGET_RE.match(target):
        raise InputError(f"{where}: '{jobs.redact_url(target)}' is not a target; use local, cloud, or an existing "
                         "Ray cluster's dashboard address such as http://head:8265")
    if target.startswith("http"):
        jobs.parse_address(target, where)  # host and port must parse
        return target.rstrip("/")
    return target


def shown_target(target: str) -> str:
    """What the ledger stores and rayctl prints for a target: a URL without its credentials."""
    return jobs.parse_address(target).url if target.startswith("http") else target


def launch(recipe, *, target: str | None = None, detach: bool = False, quiet: bool = False,
           ledger: Ledger | None = None, schedule: str | None = None, catalog=None,
           reporter: Reporter | None = None, wait: float = 0.0) -> dict:
    """Run `recipe` and return its final ledger row (or the live row with `detach`).

    `wait`: on the local cluster, seconds to queue for CPUs/GPUs that other rayctl runs
    hold (0: refuse at once). Raises InputError (2) for bad input, JobFailed (1) when
    the job fails or is stopped, ResourcesBusy (1) when its resources are held by other
    work, Interrupted (130) on Ctrl-C/SIGTERM, RayctlError (1) when the cluster cannot start.
    """
    target = check_target(target or recipe.target, "--target" if target else f"{recipe.path}: field 'target'")
    rep = reporter or Reporter(quiet=quiet)
    own_ledger = ledger is None
    led = ledger or Ledger()
    try:
        with _signals_as_interrupt():
            if target == "cloud":
                return _launch_cloud(recipe, led, rep, detach=detach, quiet=quiet, schedule=schedule,
                                     catalog=catalog)
            return _launch_ray(recipe, target, led, rep, detach=detach, schedule=schedule, wait=wait)
    finally:
        rep.close()
        if own_ledger:
            led.close()


def _launch_ray(recipe, target: str, led: Ledger, rep: Reporter, *, detach: bool, schedule: str | None,
                wait: float = 0.0) -> dict:
    from .. import workloads

    local = target == "local"
    run_id = new_run_id(recipe.name)
    if local:
        recipe = _fit_local_gpus(recipe, rep)
    spec = workloads.job_spec(recipe, run_id)  # bad workload input fails here, before anything starts
    logs_dir = rayctl_home() / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = logs_dir / f"{run_id}.log"
    shown = shown_target(target)
    led.start_run(run_id=run_id, recipe=recipe.name, kind=recipe.kind, target=shown, status="pending",
                  recipe_path=str(Path(recipe.path).resolve()) if recipe.path else None,
                  recipe_sha256=recipe.sha256, schedule=schedule or recipe.schedule, log_path=str(log_path),
                  nodes=1, hourly_usd=0.0, spot=False)
    _record_launcher(led, run_id)
    admitted = None  # the cluster dir whose admission book holds this run
    try:
        rep.stage(f"run {run_id} ({recipe.kind} '{recipe.name}') on {shown}")
        led.update(run_id, status="provisioning")
        if local:
            from ..providers import local as local_provider

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
            admitted = _admit(led, run_id, rep, local_provider.cluster_dir(), address, spec, wait)
        else:
            address, extra_env = target, {}
            v = jobs.probe(address)
            rep.stage(f"Ray {v.get('ray_version', '?')} cluster at {shown}")
            led.update(run_id, cluster=shown, ray_address=shown)
            led.open_segment(run_id, cloud=None, nodes=1, hourly_usd_per_node=0.0)
    except KeyboardInterrupt:
        queued = led.get(run_id)["status"] == "queued"
        _finish_once(led, run_id, "interrupted", "interrupted (Ctrl-C or SIGTERM) while "
                     + ("queued for resources" if queued else "the cluster was starting"))
        raise Interrupted(f"run {run_id} interrupted before its job was submitted") from None
    except RayctlError as e:
        _finish_once(led, run_id, "failed", str(e).splitlines()[0][:500])
        raise
    except BaseException as e:
        _finish_once(led, run_id, "failed", f"internal error: {type(e).__name__}: {e}"[:500])
        raise
    try:
        return run_job(led, run_id, address, spec, reporter=rep, detach=detach, extra_env=extra_env,
                       time_limit=recipe.budget.max_hours * 3600 if recipe.budget.max_hours else None,
                       recipe_name=recipe.name, secrets_via="file" if local else "runtime_env")
    finally:
        if admitted is not None and led.get(run_id)["status"] != "running":
            from . import admission

            admission.release(admitted, run_id)  # a detached job keeps its entry while Ray runs it


def _admit(led: Ledger, run_id: str, rep: Reporter, cdir: Path, address: str, spec, wait: float) -> Path:
    """Admission on the local cluster (rayctl.runs.admission): reserve the job's needs, queue, or refuse."""
    from . import admission

    jobs.check_fits(address, spec.needs_cpus, spec.needs_gpus)  # never fits: exit 2, not a queue

    def on_wait(what: str) -> None:
        row = led.get(run_id)
        if row["status"] in FINAL:  # `rayctl stop RUN` while it was queued
            raise JobFailed(f"run {run_id} was stopped while queued")
        if row["status"] != "queued" or row.get("reason") != what[:500]:
            led.update(run_id, status="queued", reason=what[:500])
            rep.stage(f"queued: {what}")

    admission.admit(cdir, address, run_id, spec.needs_cpus, spec.needs_gpus, wait_s=wait, on_wait=on_wait)
    if led.get(run_id)["status"] == "queued":
        led.update(run_id, status="provisioning", reason=None)
        rep.stage("admitted: the resources it waited for are free")
    return cdir


def _record_launcher(led: Ledger, run_id: str) -> None:
    """Which process follows the run, so `rayctl runs` can tell a launch that was killed (kill -9)."""
    try:
        import psutil

        ctime = psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - without psutil the run is reconciled from Ray alone
        ctime = None
    led.add_event(run_id, "launcher", detail={"pid": os.getpid(), "create_time": ctime})


# ---------------------------------------------------------------------------- secrets

# Runs as the job's entrypoint on a cluster on this machine: reads the run's secrets file
# (0600), deletes it, puts the values in the environment and execs the real entrypoint.
_SECRET_EXEC = """import json, os, sys
p = sys.argv[1]
try:
    f = open(p)
except FileNotFoundError:
    sys.exit("rayctl: the job's secrets file " + p + " is gone (read by an earlier start of this job, "
             "or removed); launch the run again")
with f:
    d = json.load(f)
os.unlink(p)
os.environ.update(d)
os.execv("/bin/sh", ["/bin/sh", "-c", sys.argv[2]])
"""


def split_secrets(env_vars: dict) -> tuple[dict, dict]:
    """(env vars without the secrets, the secrets): names redact.is_secret_name says hold credentials."""
    from ..redact import is_secret_name

    plain = {k: v for k, v in env_vars.items() if not is_secret_name(str(k))}
    return plain, {k: str(v) for k, v in env_vars.items() if is_secret_name(str(k))}


def secrets_dir() -> Path:
    d = rayctl_home() / "secrets"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    return d


def secrets_file(run_id: str) -> Path:
    return rayctl_home() / "secrets" / f"{run_id}.json"


def _write_secrets_file(run_id: str, secret: dict) -> Path:
    import json

    path = secrets_dir() / f"{run_id}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(secret, f)
    return path


def remove_secrets_file(run_id: str) -> None:
    """Delete the run's secrets file if the job has not (it never started, or was stopped first)."""
    with contextlib.suppress(OSError):
        secrets_file(run_id).unlink()


def _with_secrets(spec, run_id: str, extra_env: dict, secrets_via: str, address: str, rep):
    """(spec to submit, extra env): workload.env secrets moved out of the runtime env (`file`), or
    left in it with a warning (`runtime_env`, an existing cluster a local file cannot reach)."""
    import shlex

    runtime_env = dict(spec.runtime_env or {})
    env_vars = dict(runtime_env.get("env_vars") or {})
    plain, secret = split_secrets(env_vars)
    extra_plain, extra_secret = split_secrets(extra_env)
    secret.update({k: v for k, v in extra_secret.items() if k not in secret})
    if not secret:
        return spec, extra_env
    if secrets_via != "file":
        rep.warn(f"the secrets in workload.env ({', '.join(sorted(secret))}) travel in the job's runtime_env on "
                 f"the existing Ray cluster at {jobs.redact_url(address)}: anyone who can read that cluster's "
                 "dashboard (GET /api/jobs/) can read them, unless the cluster has Ray token auth "
                 "(RAY_AUTH_MODE=token; see docs/launch.md)")
        return spec, extra_env
    path = _write_secrets_file(run_id, secret)
    runtime_env["env_vars"] = plain
    entry = (f"{shlex.quote(sys.executable)} -c {shlex.quote(_SECRET_EXEC)} {shlex.quote(str(path))} "
             f"{shlex.quote(spec.entrypoint)}")
    return dataclasses.replace(spec, runtime_env=runtime_env, entrypoint=entry), extra_plain


def run_job(led: Ledger, run_id: str, address: str, spec, *, reporter: Reporter | None = None,
            detach: bool = False, extra_env: dict | None = None, time_limit: float | None = None,
            recipe_name: str = "", secrets_via: str = "runtime_env") -> dict:
    """Submit `spec` to the Ray cluster at `address` as run `run_id`'s job, follow it, record it.

    The run's ledger row must exist (with `log_path`); the cluster must be up. This is
    the part every target shares: the local head, an existing cluster, a cloud head.
    Returns the final row (or the live one: `running` with `detach`, `serving` for a
    detached Serve app). On any exit the row is final and the job is not left running:
    JobFailed (1) failed/stopped, Interrupted (130), InputError (2), RayctlError (1).

    Secrets (workload.env names such as HF_TOKEN, redact.is_secret_name): with
    `secrets_via="file"` (a cluster on this machine) they go to a 0600 file the job's
    entrypoint reads and deletes, never into the runtime env; with `"runtime_env"` (an
    existing cluster) they stay in the runtime env, with a warning. `address` may carry
    `user:pw@`; the ledger and messages get it without.
    """
    rep = reporter or Reporter()
    shown = jobs.parse_address(address, "address").url
    wrote_secrets = False
    log_path = led.get(run_id).get("log_path") or str(rayctl_home() / "logs" / f"{run_id}.log")
    cl = None
    job_id = None
    report = protocol.Report()
    log = None
    try:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8", errors="replace")
        cl = jobs.client(address)
        busy_hint = _busy_hint(led, shown, run_id)
        if not busy_hint and led.get(run_id).get("cluster") == "local":
            from . import admission
            from ..providers import local as local_provider

            busy_hint = admission.holders_hint(local_provider.cluster_dir(), address, run_id)
        for w in jobs.check_resources(address, spec.needs_cpus, spec.needs_gpus, busy_hint=busy_hint):
            rep.warn(w)
        if led.get(run_id)["status"] in FINAL:  # `rayctl stop` got here first
            raise JobFailed(f"run {run_id} was stopped before its job was submitted")
        env = {**(extra_env or {}), "RAYCTL_RUN_ID": run_id}
        meta = {"rayctl_run_id": run_id, "rayctl_recipe": recipe_name, "rayctl_detached": int(spec.detached)}
        spec, env = _with_secrets(spec, run_id, env, secrets_via, address, rep)
        wrote_secrets = secrets_via == "file" and secrets_file(run_id).exists()
        job_id = jobs.submit(cl, spec, run_id, extra_env=env, metadata=meta)
        led.update(run_id, status="running", ray_job_id=job_id, ray_address=shown)
        rep.stage(f"submitted Ray job {job_id} (logs: {log_path})")
        if detach:
            led.add_event(run_id, "launcher", detail={"pid": None, "detached": True})  # nobody follows it now
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
        reason = jobs.failure_reason(outcome.message, outcome.last_lines, report.metrics.get("error"))
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
        if wrote_secrets and not (detach and job_id is not None):
            remove_secrets_file(run_id)  # the job did not read it (never started, or stopped first)


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
    from ..providers import local as local_provider

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
        from ..providers.skypilot import provider as skypilot
    except ModuleNotFoundError as e:
        if e.name not in ("rayctl.providers.skypilot.provider",):
            raise InputError(f"the cloud target needs {e.name}: pip install 'rayctl[cloud]'") from None
        raise InputError("the cloud target is not available in this rayctl (rayctl.providers.skypilot.provider is "
                         "missing); use target: local or an existing cluster's http://HEAD:8265") from None
    from ..planning import catalog as catalog_mod
    from ..planning import planner

    from ..planning import preemption

    cat = catalog if isinstance(catalog, catalog_mod.Catalog) else catalog_mod.load(catalog)
    catalog_mod.warn_stale_once(cat, rep.warn)  # the plan below names the source and date too
    hist = preemption.history()  # spot offers ranked by effective $/h once the ledger has history
    objective = planner.objective_for(recipe)  # per-token: cheapest per output token first (the failover order)
    plan = planner.plan(recipe, cat, rate_fn=hist.rate_fn(recipe.resources.nodes) if hist.any else None,
                        objective=objective)
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
def _signals_as_interrupt():
    """SIGINT and SIGTERM (Ctrl-C, cron timeouts, CI cancels, `kill`) both stop the job and exit 130.

    Both handlers are installed explicitly, whatever this process inherited: a process
    started with SIGINT ignored (a background job of a shell, some CI runners and init
    systems) would otherwise keep Python from installing its own Ctrl-C handler, and
    `kill -INT` would do nothing. The previous handlers come back afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


_sigterm_as_interrupt = _signals_as_interrupt  # the old name, for callers elsewhere


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
    from ..providers import local as local_provider

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
    """The run's row brought up to date from its cluster (job status, metrics, Serve counters, log).

    A run nobody follows any more (its `rayctl launch` was killed, or it was detached) is
    reconciled here: once its job ends the row gets the job's outcome; while the cluster
    is alive its saved log is completed from Ray; when its cluster is gone it is `lost`.
    Talks to the cluster over HTTP with short timeouts (no Ray import).
    """
    row = get_run(led, run)
    rid = row["id"]
    if row["status"] not in LIVE:
        return row
    if row["target"] == "cloud":
        try:
            from ..providers.skypilot import provider as skypilot
        except ModuleNotFoundError:
            return row  # cloud extras not installed here: the ledger row is all we know
        return skypilot.status_run(led, rid)  # also enforces the budget and reads Serve counters
    if row["status"] == "serving":
        url = _metrics_url(row)
        counters = serve_metrics(url) if url else None
        if counters is not None:
            led.update(rid, **_serve_fields(row, counters))
        elif _cluster_gone(row):
            return _finish_lost(led, rid, GONE_REASON)
        return led.get(rid)
    launcher = _launcher_alive(led, rid)
    if launcher:
        return row  # its launch follows the run and records the outcome itself
    address = row.get("ray_address")
    job_id = row.get("ray_job_id")
    if not job_id:
        if launcher is None:
            return row  # a run recorded before launches said who follows them: nothing to tell
        doc = _job_doc_or_none(address, rid) if address else None
        if doc is None:
            if address and _cluster_gone(row):
                return _finish_lost(led, rid, GONE_REASON)
            return _finish_lost(led, rid, f"its rayctl launch (pid {_launcher_pid(led, rid)}) ended before "
                                          "the job was submitted (killed?)")
        job_id = rid  # submitted just before the launch died: the job's submission id is the run id
        led.update(rid, status="running", ray_job_id=job_id)
    if not address:
        return row
    try:
        doc = jobs.job_doc(address, job_id)
    except (OSError, ValueError):
        if _cluster_gone(row):
            return _finish_lost(led, rid, GONE_REASON)
        return row  # unreachable for now (an existing cluster may come back)
    if doc is None:
        return _finish_lost(led, rid, f"the Ray cluster at {address} has no job {job_id} any more "
                                      "(the cluster was restarted?)")
    st = str(doc.get("status"))
    try:
        text = jobs.job_logs(address, job_id)
    except (OSError, ValueError):
        text = None
    if text is not None:
        _complete_log(row.get("log_path"), text)
    if st not in jobs.TERMINAL:
        return row
    remove_secrets_file(rid)  # a detached job that ended before reading it
    report = protocol.Report()
    for ln in (text or "").splitlines():
        report.feed(ln)
    fields = report.ledger_fields()
    if led.get(rid)["status"] in FINAL:  # the attached launch finished it meanwhile
        return led.get(rid)
    if st == "SUCCEEDED":
        if str((doc.get("metadata") or {}).get("rayctl_detached")) == "1":
            led.update(rid, status="serving", **fields)
            return led.get(rid)
        return led.finish(rid, "succeeded", **fields)
    if st == "STOPPED":
        return led.finish(rid, "stopped", reason="the job was stopped (rayctl stop, or from Ray)", **fields)
    return led.finish(rid, "failed", reason=jobs.failure_reason(doc.get("message") or "",
                                                                (text or "").splitlines()[-200:],
                                                                report.metrics.get("error")), **fields)


GONE_REASON = "its local Ray cluster is gone (rayctl down, a reboot, or its head died) while no launch followed it"


def _finish_lost(led: Ledger, rid: str, reason: str) -> dict:
    remove_secrets_file(rid)
    if led.get(rid)["status"] not in FINAL:
        led.finish(rid, "lost", reason=reason)
    return led.get(rid)


def _job_doc_or_none(address: str, job_id: str) -> dict | None:
    try:
        return jobs.job_doc(address, job_id, timeout=3.0)
    except (OSError, ValueError):
        return None


def _launcher_event(led: Ledger, rid: str) -> dict | None:
    ev = [e for e in led.events(rid, "launcher") if isinstance(e.get("detail"), dict)]
    return ev[-1]["detail"] if ev else None


def _launcher_pid(led: Ledger, rid: str):
    d = _launcher_event(led, rid)
    return d.get("pid") if d else "?"


def _launcher_alive(led: Ledger, rid: str) -> bool | None:
    """Whether the `rayctl launch` that started the run still runs; None when it was not recorded."""
    d = _launcher_event(led, rid)
    if not d or not d.get("pid"):
        return None
    try:
        import psutil
    except ImportError:
        return None
    try:
        p = psutil.Process(int(d["pid"]))
        if d.get("create_time") is not None and abs(p.create_time() - float(d["create_time"])) > 1.0:
            return False  # the pid now belongs to another process
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _complete_log(log_path: str | None, text: str) -> None:
    """Make the saved log hold Ray's whole log (a killed launch left it short, a detached one empty)."""
    if not log_path:
        return
    text = ANSI_RE.sub("", text)
    lp = Path(log_path)
    try:
        size = lp.stat().st_size
    except OSError:
        size = -1
    if size >= len(text.encode("utf-8", errors="replace")):
        return
    lp.parent.mkdir(parents=True, exist_ok=True)
    tmp = lp.with_name(f".{lp.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8", errors="replace")
    os.replace(tmp, lp)


def reconcile(led: Ledger, *, budget_s: float = 30.0) -> list[str]:
    """Bring every non-final run on a Ray target up to date with its cluster (`runs`, `cost report`).

    Returns the ids whose row changed status. Bounded: each cluster call has a short
    timeout, and runs left when `budget_s` is spent wait for the next call.
    """
    changed = []
    deadline = time.monotonic() + budget_s
    for r in led.runs(status=LIVE):
        if r["target"] == "cloud" or time.monotonic() > deadline:
            continue
        try:
            after = refresh(led, r["id"])
        except Exception:  # noqa: BLE001 - listing runs never fails on one run's cluster
            continue
        if after["status"] != r["status"]:
            changed.append(r["id"])
    return changed


def stop_run(led: Ledger, run: str) -> dict:
    """Stop a run: its Ray job, or its Serve app; the row ends `stopped`."""
    row = refresh(led, run)
    rid = row["id"]
    if row["status"] in FINAL:
        return row
    if row["target"] == "cloud":
        try:
            from ..providers.skypilot import provider as skypilot
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
    if final in jobs.TERMINAL or final == "PENDING":
        remove_secrets_file(rid)  # stopped (or never to start): nobody reads it any more
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
            from ..providers.skypilot import provider as skypilot
        except ModuleNotFoundError:
            raise InputError(f"no cluster '{cluster}': rayctl knows 'local' (the cloud target is not "
                             "available in this rayctl)") from None
        return skypilot.down_cluster(led, cluster)
    from ..providers import local as local_provider

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
        remove_secrets_file(r["id"])
        if led.get(r["id"])["status"] not in FINAL:
            led.finish(r["id"], "stopped", reason="rayctl down stopped the local Ray cluster")
            stopped_runs.append(r["id"])
    if result is None and not stopped_runs:
        return None
    return {**(result or {"name": "local"}), "runs_stopped": stopped_runs}
