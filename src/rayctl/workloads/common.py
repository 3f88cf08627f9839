"""Helpers shared by the built-in workloads.

Two sides use this module:

* the client (`job_spec`): turns a recipe's (already validated) `workload:` section into
  a JSON payload with every default filled in and every relative path resolved against
  the recipe file, and builds the `JobSpec` that carries it to the cluster in the
  environment variable `RAYCTL_WORKLOAD`;
* the job on the cluster (`python -m rayctl.workloads.<module>`): reads that payload,
  waits (bounded) for the CPUs/GPUs it needs, and fails with a one-line message when
  it cannot run.

The fields themselves (types, defaults, docs) are declared in `rayctl.recipe.kinds`.
Only the standard library is imported at module level.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..recipe.kinds.base import COMMON_DOC, COMMON_FIELDS, DEMO_MODEL, is_uri, with_defaults  # noqa: F401
from ..settings import package_dir, rayctl_home

ENV = "RAYCTL_WORKLOAD"
PAYLOAD_VERSION = 1
MODULES = {"train": "train", "tune": "tune", "batch-infer": "batch_infer", "serve": "serve"}


class WorkloadError(Exception):
    """A problem the job reports in one line (not a bug): no GPUs, missing input, ..."""


# ---------------------------------------------------------------- paths and homes

def resolve_path(path: str, base_dir: str | os.PathLike | None) -> str:
    """`path` as an absolute local path (relative to `base_dir`), or unchanged if a URI."""
    p = str(path)
    if is_uri(p):
        return p
    q = Path(p).expanduser()
    if not q.is_absolute():
        q = Path(base_dir or ".") / q
    return os.path.abspath(q)


def recipe_dir(recipe) -> str:
    return os.path.dirname(os.path.abspath(recipe.path)) if getattr(recipe, "path", "") else os.getcwd()


def gpus_per_replica(setting, replicas: int, total_gpus: float) -> float:
    """Resolve a per-replica GPU setting: auto -> 1 when the cluster has a GPU per replica, else 0."""
    if setting in (None, "auto"):
        return 1.0 if total_gpus >= max(1, replicas) else 0.0
    return float(setting)


# ---------------------------------------------------------------- the job spec

def python_cmd(recipe) -> str:
    """Python on the cluster: this interpreter for the local target, else `python`."""
    if getattr(recipe, "target", "local") == "local":
        return shlex.quote(sys.executable)
    return "python"


def payload(recipe, run_id: str, workload: dict) -> dict:
    res = recipe.resources
    return {
        "version": PAYLOAD_VERSION,
        "run_id": run_id,
        "recipe": recipe.name,
        "kind": recipe.kind,
        "recipe_dir": recipe_dir(recipe),
        "target": recipe.target,
        "workload": workload,
        "resources": {
            "accelerators": [str(a) for a in res.accelerators],
            "nodes": res.nodes,
        },
    }


def make_spec(recipe, run_id: str, module: str, workload: dict, *, needs_cpus: float, needs_gpus: float = 0,
              detached: bool = False, metadata: dict | None = None, args: str = ""):
    from . import JobSpec

    from ..redact import is_secret

    # The payload is visible wherever the runtime env is (dashboard, plans, emitted tasks):
    # it names the secret env vars but never holds their values (they travel as env vars).
    shown = dict(workload)
    if shown.get("env"):
        shown["env"] = {k: v for k, v in shown["env"].items() if not is_secret(str(k), v)}
    env = {
        ENV: json.dumps(payload(recipe, run_id, shown), separators=(",", ":")),
        "RAY_DEDUP_LOGS": "0",  # keep every ::rayctl:: line a worker prints
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if recipe.target == "local":
        env["RAYCTL_HOME"] = str(rayctl_home())
    for k, v in (workload.get("env") or {}).items():
        env[str(k)] = str(v)
    runtime_env: dict = {"py_modules": [package_dir()], "env_vars": env}
    if workload.get("pip"):
        runtime_env["pip"] = list(workload["pip"])
    entry = f"{python_cmd(recipe)} -m rayctl.workloads.{module}" + (f" {args}" if args else "")
    md = {"rayctl_run_id": run_id, "rayctl_recipe": recipe.name, "rayctl_kind": recipe.kind}
    md.update(metadata or {})
    return JobSpec(entrypoint=entry, runtime_env=runtime_env, entrypoint_num_cpus=0, entrypoint_num_gpus=0,
                   needs_cpus=float(needs_cpus), needs_gpus=float(needs_gpus), detached=detached, metadata=md)


# ---------------------------------------------------------------- inside the job

def load_payload() -> dict:
    raw = os.environ.get(ENV)
    if not raw:
        raise WorkloadError(f"${ENV} is not set: built-in workloads are started by `rayctl launch`, "
                            "which passes the recipe's workload settings in it")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise WorkloadError(f"${ENV} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("version") != PAYLOAD_VERSION:
        raise WorkloadError(f"${ENV} has an unknown payload version (expected {PAYLOAD_VERSION}); "
                            "is the cluster running a different rayctl?")
    return data


def connect():
    """ray.init() for a job driver (the job supervisor sets RAY_ADDRESS)."""
    import ray

    if not ray.is_initialized():
        # The job supervisor gives the driver RAY_ADDRESS; hand it to every actor too, or
        # Ray's own helpers there (e.g. Train's placement-group cleaner, which uses the
        # state API) guess "auto" and fail on machines running several Ray clusters.
        addr = os.environ.get("RAY_ADDRESS")
        env = {"env_vars": {"RAY_ADDRESS": addr}} if addr else None
        ray.init(log_to_driver=True, logging_level="WARNING", runtime_env=env)
    return ray


def cluster_totals() -> tuple[float, float]:
    import ray

    r = ray.cluster_resources()
    return float(r.get("CPU", 0)), float(r.get("GPU", 0))


def alive_nodes() -> list[dict]:
    """The cluster's live nodes (`ray.nodes()` entries) that hold CPUs or GPUs."""
    import ray

    return [n for n in ray.nodes() if n.get("Alive") and (n.get("Resources") or {}).get("CPU", 0)
            + (n.get("Resources") or {}).get("GPU", 0) > 0]


def node_id() -> str:
    """The Ray node id of the process calling it (a trial, a worker, a replica)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def nodes_used(ids) -> int:
    """`nodes_used` metric: how many distinct Ray nodes did work, from the node ids reported."""
    return len({str(i) for i in ids if i})


def wait_for_resources(cpus: float, gpus: float, timeout_s: float, what: str) -> None:
    """Return once `cpus`/`gpus` are free; fail fast if the cluster can never hold them.

    Ray would otherwise queue the work forever (an actor pool or trainer that does not
    fit just waits). A short wait covers resources that other jobs are releasing.
    """
    import ray

    total_cpu, total_gpu = cluster_totals()
    if cpus > total_cpu + 1e-9 or gpus > total_gpu + 1e-9:
        raise WorkloadError(
            f"{what} needs {_fmt(cpus)} CPU and {_fmt(gpus)} GPU but the whole cluster has {_fmt(total_cpu)} CPU "
            f"and {_fmt(total_gpu)} GPU; lower the workload's worker/replica count or per-worker CPUs/GPUs, "
            "or use a larger cluster")
    deadline = time.monotonic() + timeout_s
    shown = False
    while True:
        free = ray.available_resources()
        fc, fg = float(free.get("CPU", 0)), float(free.get("GPU", 0))
        if fc + 1e-9 >= cpus and fg + 1e-9 >= gpus:
            return
        if time.monotonic() >= deadline:
            raise WorkloadError(
                f"{what} needs {_fmt(cpus)} CPU and {_fmt(gpus)} GPU; after {timeout_s:.0f} s only {_fmt(fc)} CPU "
                f"and {_fmt(fg)} GPU are free (other jobs, Serve replicas or actors hold the rest). Stop them "
                "(rayctl runs / rayctl stop RUN), lower the workload's CPUs, or raise workload.resource_timeout_s")
        if not shown:
            print(f"rayctl: waiting up to {timeout_s:.0f} s for {_fmt(cpus)} CPU / {_fmt(gpus)} GPU "
                  f"(free now: {_fmt(fc)} CPU / {_fmt(fg)} GPU)", flush=True)
            shown = True
        time.sleep(1.0)


def _fmt(x: float) -> str:
    return f"{x:g}"


def run_main(fn: Callable[[dict], Any]) -> None:
    """Run a workload's main with its payload; WorkloadError -> one line on stderr, exit 1."""
    from .. import protocol

    try:
        fn(load_payload())
    except WorkloadError as e:
        sys.stderr.write(f"rayctl: workload error: {e}\n")
        sys.stderr.flush()
        protocol.metrics(error=str(e))
        sys.exit(1)
