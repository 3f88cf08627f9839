"""Launch a recipe: recipe -> cluster -> Ray job -> ledger.

`launch(recipe, ...)` is what `rayctl launch`, `rayctl schedule run` and tests call.
The run's ledger row moves pending -> provisioning -> (queued ->) running -> succeeded |
failed | interrupted | stopped | lost (or `serving` for a Serve app that keeps running). Whatever
happens, the row ends in a final status with a reason, and a Ctrl-C (or SIGTERM)
stops the job before `Interrupted` (exit 130) is raised.

Targets:
- `local`: the rayctl-owned head (providers/local/), started or reused; it stays up
  after the job (starting one costs 10-20 s), `rayctl down` stops it.
- `http(s)://host:8265`: an existing cluster; rayctl only submits there.
- `cloud`: `rayctl.providers.skypilot.launch_cloud` (the cloud provider).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
from pathlib import Path
from typing import Callable

from . import jobs
from .. import protocol
from .reconcile import record_launcher, record_node_recovery
from .reporter import ANSI_RE, Reporter
from .secrets import remove_secrets_file, secrets_file, with_secrets
from .signals import no_interrupts, signals_as_interrupt
from ..settings import rayctl_home
from ..errors import InputError, Interrupted, JobFailed, RayctlError
from ..ledger import FINAL, Ledger, new_run_id
from ..redact import redact, redact_url, secret_values
from .capacity import check_fits, check_recipe_nodes, check_resources, cluster_resources
from .cluster_api import client, parse_address, probe
from .follow import failure_reason, follow

TARGET_RE = re.compile(r"^(local|cloud|https?://\S+)$")
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"
def check_target(target: str, where: str = "--target") -> str:
    """The target, checked: local, cloud, or a dashboard URL (which may carry `user:pw@`).

    The URL is returned as given (the credentials are needed to connect); store and print
    `shown_target(target)` instead.
    """
    if not isinstance(target, str) or not TARGET_RE.match(target):
        raise InputError(f"{where}: '{redact_url(target)}' is not a target; use local, cloud, or an existing "
                         "Ray cluster's dashboard address such as http://head:8265")
    if target.startswith("http"):
        parse_address(target, where)  # host and port must parse
        return target.rstrip("/")
    return target


def shown_target(target: str) -> str:
    """What the ledger stores and rayctl prints for a target: a URL without its credentials."""
    return parse_address(target).url if target.startswith("http") else target


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
    from ..recipe import check_target as recipe_fits_target

    recipe_fits_target(recipe, target)  # e.g. checkpoints every node reaches: exit 2 before anything starts
    rep = reporter or Reporter(quiet=quiet)
    own_ledger = ledger is None
    led = ledger or Ledger()
    try:
        from .api_runs import prepare

        recipe = prepare(recipe, led)  # engine http: endpoint run:ID resolved, api_key_env read (exit 2 if unset)
        with signals_as_interrupt():
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
                  nodes=recipe.resources.nodes if local else 1, hourly_usd=0.0, spot=False)
    record_launcher(led, run_id)
    admitted = None  # the cluster dir whose admission book holds this run
    cluster = None  # the local cluster, on the local target

    def interrupted() -> str:
        queued = led.get(run_id)["status"] == "queued"
        return f"{INTERRUPTED} while " + ("queued for resources" if queued else "the cluster was starting")

    with _ends_recorded(led, run_id, interrupted=interrupted, message="interrupted before its job was submitted"):
        rep.stage(f"run {run_id} ({recipe.kind} '{recipe.name}') on {shown}")
        led.update(run_id, status="provisioning")
        if local:
            from ..providers import local as local_provider

            cpus = int(-(-recipe.resources.cpus.value // 1)) if recipe.resources.cpus else None
            cluster = local_provider.ensure_cluster(cpus=cpus, nodes=recipe.resources.nodes, status=rep.stage)
            for w in cluster.warnings:
                rep.warn(w)
            rep.stage(f"local Ray cluster {'reused' if cluster.reused else 'started'} at {cluster.address}")
            address, extra_env = cluster.address, cluster.env
            led.update(run_id, cluster="local", cloud="local", instance_type=f"local-{cluster.num_cpus}cpu",
                       ray_address=address)
            led.open_segment(run_id, cloud="local", instance_type=f"local-{cluster.num_cpus}cpu",
                             nodes=recipe.resources.nodes, hourly_usd_per_node=0.0)
            admitted = _admit(led, run_id, rep, local_provider.cluster_dir(), address, spec, wait)
        else:
            address, extra_env = target, {}
            v = probe(address)
            rep.stage(f"Ray {v.get('ray_version', '?')} cluster at {shown}")
            for w in check_recipe_nodes(address, recipe):  # too few nodes or accelerators: exit 2
                rep.warn(w)
            led.update(run_id, cluster=shown, ray_address=shown)
            led.open_segment(run_id, cloud=None, nodes=1, hourly_usd_per_node=0.0)
    try:
        with _node_watch(led, run_id, rep, cluster if local and not detach else None, recipe.resources.nodes):
            return run_job(led, run_id, address, spec, reporter=rep, detach=detach, extra_env=extra_env,
                           time_limit=recipe.budget.max_hours * 3600 if recipe.budget.max_hours else None,
                           recipe_name=recipe.name, secrets_via="file" if local else "runtime_env")
    finally:
        if admitted is not None and led.get(run_id)["status"] != "running":
            from . import admission

            admission.release(admitted, run_id)  # a detached job keeps its entry while Ray runs it


def _node_watch(led: Ledger, run_id: str, rep: Reporter, cluster, nodes: int):
    """While a run on a multi-node local cluster is followed: restart a worker node that dies, and
    record it as a recovery (an event and a new billing segment, as a cloud recovery is)."""
    if cluster is None or not cluster.workers:
        return contextlib.nullcontext()
    from ..providers import local as local_provider

    def recovered(worker: dict) -> None:
        rep.warn(f"local worker node {worker['ip']} was lost; rayctl restarted it")
        with contextlib.closing(Ledger(led.path)) as own:  # this runs in the watcher's thread
            record_node_recovery(own, run_id, worker, cluster.num_cpus, nodes)

    return local_provider.NodeWatch(recovered, status=rep.stage)


def _admit(led: Ledger, run_id: str, rep: Reporter, cdir: Path, address: str, spec, wait: float) -> Path:
    """Admission on the local cluster (rayctl.runs.admission): reserve the job's needs, queue, or refuse."""
    from . import admission

    check_fits(address, spec.needs_cpus, spec.needs_gpus)  # never fits: exit 2, not a queue

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


def run_job(led: Ledger, run_id: str, address: str, spec, *, reporter: Reporter | None = None,
            detach: bool = False, extra_env: dict | None = None, time_limit: float | None = None,
            recipe_name: str = "", secrets_via: str = "runtime_env") -> dict:
    """Submit `spec` to the Ray cluster at `address` as run `run_id`'s job, follow it, record it.

    The run's ledger row must exist (with `log_path`); the cluster must be up. This is
    the part every target shares: the local head, an existing cluster, a cloud head.
    Returns the final row (or the live one: `running` with `detach`, `serving` for a
    detached Serve app). On any exit the row is final and the job is not left running:
    JobFailed (1) failed/stopped, Interrupted (130), InputError (2), RayctlError (1).

    Secrets (workload.env entries such as HF_TOKEN, redact.is_secret): with
    `secrets_via="file"` (a cluster on this machine) they go to a 0600 file the job's
    entrypoint reads and deletes, never into the runtime env; with `"runtime_env"` (an
    existing cluster) they stay in the runtime env, with a warning. `address` may carry
    `user:pw@`; the ledger and messages get it without.
    """
    rep = reporter or Reporter()
    shown = parse_address(address, "address").url
    wrote_secrets = False
    secrets: set[str] = set()
    log_path = led.get(run_id).get("log_path") or str(rayctl_home() / "logs" / f"{run_id}.log")
    cl = None
    job_id = None
    report = protocol.Report()
    log = None
    try:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8", errors="replace")
        cl = client(address)
        busy_hint = _busy_hint(led, shown, run_id)
        if not busy_hint and led.get(run_id).get("cluster") == "local":
            from . import admission
            from ..providers import local as local_provider

            busy_hint = admission.holders_hint(local_provider.cluster_dir(), address, run_id)
        for w in check_resources(address, spec.needs_cpus, spec.needs_gpus, busy_hint=busy_hint):
            rep.warn(w)
        if led.get(run_id)["status"] in FINAL:  # `rayctl stop` got here first
            raise JobFailed(f"run {run_id} was stopped before its job was submitted")
        # RAY_DEDUP_LOGS_ALLOW_REGEX: Ray folds look-alike lines from different worker processes into
        # one "[repeated Nx across cluster]" line; every `::rayctl::` line reads alike (its words hold
        # digits), so protocol lines from workers would be lost. They are never folded.
        env = {**(extra_env or {}), "RAYCTL_RUN_ID": run_id, **protocol.JOB_ENV}
        # workload.env secret values: masked in every job log line echoed, saved or parsed, and in the reason
        secrets.update(secret_values({**((spec.runtime_env or {}).get("env_vars") or {}), **env}))
        meta = {"rayctl_run_id": run_id, "rayctl_recipe": recipe_name, "rayctl_detached": int(spec.detached)}
        spec, env = with_secrets(spec, run_id, env, secrets_via, address, rep)
        wrote_secrets = secrets_via == "file" and secrets_file(run_id).exists()
        job_id = jobs.submit(cl, spec, run_id, extra_env=env, metadata=meta)
        led.update(run_id, status="running", ray_job_id=job_id, ray_address=shown)
        rep.begin_job(user_code=(spec.metadata or {}).get("rayctl_workload") == "user")
        rep.stage(f"submitted Ray job {job_id}; its whole output: `rayctl logs {run_id}`")
        if detach:
            led.add_event(run_id, "launcher", detail={"pid": None, "detached": True})  # nobody follows it now
            rep.stage(f"detached; follow with `rayctl logs {run_id} --follow`, stop with `rayctl stop {run_id}`")
            return led.get(run_id)

        last_metrics_write = [0.0]

        def on_line(line: str) -> None:
            line = redact(line, extra=tuple(secrets))
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

        outcome = follow(cl, job_id, on_line=on_line, on_status=lambda st, _m: rep.job_status(st, job_id),
                              on_warning=rep.warn, time_limit=time_limit, address=address, busy_hint=busy_hint)
        fields = report.ledger_fields()
        if outcome.status == "SUCCEEDED":
            if spec.detached:
                led.update(run_id, status="serving", **fields)
                return led.get(run_id)
            led.finish(run_id, "succeeded", **fields)
            from .api_runs import record_cost

            record_cost(led, run_id, rep.warn)  # engine http against a managed API: its tokens x its prices
            return led.get(run_id)
        if outcome.status == "STOPPED":
            led.finish(run_id, "stopped", reason="the job was stopped (rayctl stop, or from Ray)", **fields)
            raise JobFailed(f"run {run_id} was stopped before it finished")
        reason = redact(failure_reason(outcome.message, outcome.last_lines, report.metrics.get("error")),
                        extra=tuple(secrets))
        led.finish(run_id, "failed", reason=reason, **fields)
        raise JobFailed(f"run {run_id} failed: {reason}\nthe job's whole output: `rayctl logs {run_id}`")
    except KeyboardInterrupt as e:
        with no_interrupts():
            rep.stage("interrupted; stopping the job" if job_id else "interrupted")
            final = None
            if cl is not None and job_id is not None:
                try:
                    final = jobs.stop(cl, job_id)
                except Exception as err:  # noqa: BLE001 - still record the interruption
                    rep.warn(f"could not stop Ray job {job_id}: {err}")
            _record_end(led, run_id, e, INTERRUPTED + (f"; {jobs.stopped_words(final)}" if final else ""),
                        secrets=tuple(secrets), **report.ledger_fields())
        raise Interrupted(f"run {run_id} interrupted" + (f"; its job was stopped ({jobs.stopped_words(final)})"
                                                        if final else "")) from None
    except RayctlError as e:
        if cl is not None and job_id is not None and not isinstance(e, JobFailed) \
                and not getattr(e, "job_stopped", False):
            with contextlib.suppress(Exception):
                jobs.stop(cl, job_id)  # do not leave a job running that nobody follows
        _record_end(led, run_id, e, secrets=tuple(secrets), **report.ledger_fields())
        raise
    except BaseException as e:
        if cl is not None and job_id is not None:
            with contextlib.suppress(Exception):
                jobs.stop(cl, job_id)
        _record_end(led, run_id, e, secrets=tuple(secrets))
        raise
    finally:
        if log is not None:
            log.close()
        if wrote_secrets and not (detach and job_id is not None):
            remove_secrets_file(run_id)  # the job did not read it (never started, or stopped first)


def _record_end(led: Ledger, run_id: str, e: BaseException, interrupted: str = INTERRUPTED,
                secrets: tuple[str, ...] = (), **fields) -> None:
    """Finish the run's row for `e`, the exception that ends its launch (a row already final stays).

    Ctrl-C/SIGTERM (KeyboardInterrupt): `interrupted` with the reason `interrupted`; a
    RayctlError: `failed` with its first line; anything else, a bug: `failed` with
    "internal error: ..." and without `fields` (they may be what broke).
    """
    if isinstance(e, KeyboardInterrupt):
        status, reason = "interrupted", interrupted
    elif isinstance(e, RayctlError):
        status, reason = "failed", str(e).splitlines()[0][:500]
    else:
        status, reason, fields = "failed", f"internal error: {type(e).__name__}: {e}"[:500], {}
    with contextlib.suppress(KeyError):
        if led.get(run_id)["status"] not in FINAL:
            led.finish(run_id, status, reason=redact(reason, extra=secrets), **fields)


@contextlib.contextmanager
def _ends_recorded(led: Ledger, run_id: str, *, interrupted: Callable[[], str] = lambda: INTERRUPTED,
                   message: str = "interrupted"):
    """Whatever ends the block records the run's end (`_record_end`); Ctrl-C/SIGTERM leaves it as
    Interrupted (exit 130) saying `run RUN_ID <message>`, other exceptions go on as they are."""
    try:
        yield
    except BaseException as e:
        if not isinstance(e, KeyboardInterrupt):
            _record_end(led, run_id, e)
            raise
        _record_end(led, run_id, e, interrupted())
        raise Interrupted(f"run {run_id} {message}") from None


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
        res = cluster_resources(state.address, timeout=3.0)
        if res is not None:
            return int(res.get("GPU", (0, 0))[1])
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    return len(local_provider.nvidia_smi_gpus())


def _launch_cloud(recipe, led: Ledger, rep: Reporter, *, detach: bool, quiet: bool, schedule, catalog) -> dict:
    from ..planning import catalog as catalog_mod
    from ..planning import planner, preemption
    from ..providers.skypilot import provider as skypilot

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
    with _ends_recorded(led, run_id):
        row = skypilot.launch_cloud(recipe, plan, led, run_id, detach=detach, quiet=quiet)
    if led.get(run_id)["status"] == "succeeded":
        from .api_runs import record_cost

        record_cost(led, run_id, rep.warn)  # engine http against a managed API, as on the local target
        return led.get(run_id)
    return row if isinstance(row, dict) else led.get(run_id)


