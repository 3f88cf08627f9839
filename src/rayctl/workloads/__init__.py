"""What runs on the cluster: a recipe's workload turned into a Ray job spec.

`job_spec(recipe, run_id) -> JobSpec` is the one entry point. Two kinds of workload:

- **User code**: `workload: {entrypoint: "python train.py", working_dir: ./src, pip: [...],
  env: {...}}` for any recipe kind. `working_dir` is relative to the recipe file.
  Handled here.
- **Built-in runners**: no `entrypoint`; the kind's module
  (`rayctl.workloads.train|tune|batch_infer|serve`) builds the spec from its own
  settings and runs as `python -m rayctl.workloads.<module>` on the cluster.

The fields of every kind's `workload:` (built-in settings and the user-code form) are
declared once in `rayctl.recipe.kinds`, which the recipe validator reads. Nothing
in this package imports the launcher side (cli, runs, planning, providers; see
docs/architecture.md), and nothing here imports Ray at module level.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..recipe import field_error
from ..recipe.kinds import USER_CODE_KEYS  # noqa: F401  (the user-code form's keys)

MODULES = {"train": "train", "tune": "tune", "batch-infer": "batch_infer", "serve": "serve"}


@dataclass
class JobSpec:
    """A Ray job: what to run, where its code and settings come from, what it needs."""

    entrypoint: str
    runtime_env: dict = field(default_factory=dict)
    entrypoint_num_cpus: float = 0.0
    entrypoint_num_gpus: float = 0.0
    needs_cpus: float = 0.0  # CPUs the whole job needs at once (pre-submit resource check)
    needs_gpus: float = 0.0
    detached: bool = False  # serve: the job ends and the app keeps serving
    metadata: dict = field(default_factory=dict)


def is_user_code(workload: dict | None) -> bool:
    return isinstance(workload, dict) and "entrypoint" in workload


def job_spec(recipe, run_id: str) -> JobSpec:
    """The Ray job for `recipe`: user code, or the kind's built-in runner."""
    if is_user_code(recipe.workload):
        return user_job_spec(recipe, run_id)
    modname = MODULES[recipe.kind]
    mod = importlib.import_module(f"{__name__}.{modname}")  # rayctl's own: never optional
    spec = mod.job_spec(recipe, run_id)
    check_outputs(recipe, spec)
    return spec


def check_outputs(recipe, spec: JobSpec) -> None:
    """Pre-flight, on the client before any cluster starts: refuse (exit 2) an output folder
    or experiment folder holding files rayctl did not write (rayctl deletes only its own).

    Local paths only, and only for targets that share this machine's files (the local head,
    an existing cluster); the job checks again before it writes, for every target and s3://.
    """
    import json

    from . import common, output

    if getattr(recipe, "target", "local") == "cloud":
        return
    try:
        wl = json.loads(spec.runtime_env["env_vars"][common.ENV])["workload"]
    except (KeyError, TypeError, ValueError):
        return
    try:
        if recipe.kind == "batch-infer" and wl.get("output") and not common.is_uri(wl["output"]):
            where = ("workload", "output")
            output.check_folder(output.LocalFS(), wl["output"], recipe=recipe.name,
                                overwrite=bool(wl.get("overwrite", True)))
        elif recipe.kind in ("train", "tune") and wl.get("storage") and wl.get("experiment") \
                and not common.is_uri(wl["storage"]):
            where = ("workload", "storage")
            output.check_experiment(output.LocalFS(), wl["storage"], wl["experiment"], recipe=recipe.name)
    except output.Refused as e:
        _fail(recipe, where, f"{e} (nothing was started)")
    except OSError as e:
        _fail(recipe, where, f"cannot check {e.filename or ''}: {e.strerror or e}")


# ---------------------------------------------------------------------------- user code


def user_job_spec(recipe, run_id: str) -> JobSpec:
    w = recipe.workload
    runtime_env: dict = {}
    base = Path(recipe.path).resolve().parent if recipe.path else Path.cwd()
    if w.get("working_dir") is not None:
        wd = (base / os.path.expanduser(str(w["working_dir"]))).resolve()
        if not wd.is_dir():
            _fail(recipe, ("workload", "working_dir"),
                  f"'{w['working_dir']}' is not a directory (resolved relative to the recipe file: {wd})")
        runtime_env["working_dir"] = str(wd)
    pip = w.get("pip")
    if pip:
        if isinstance(pip, str):
            req = (base / os.path.expanduser(pip)).resolve()
            if not req.is_file():
                _fail(recipe, ("workload", "pip"),
                      f"requirements file '{pip}' not found (resolved relative to the recipe file: {req})")
            runtime_env["pip"] = str(req)
        else:
            runtime_env["pip"] = list(pip)
    env = {str(k): _env_str(v) for k, v in (w.get("env") or {}).items()}
    env["RAYCTL_RUN_ID"] = run_id
    runtime_env["env_vars"] = env
    ep_cpus = float(w.get("entrypoint_num_cpus", 0) or 0)
    ep_gpus = float(w.get("entrypoint_num_gpus", 0) or 0)
    res = recipe.resources
    acc = res.accelerators[0].count if res.accelerators else 0
    cpus = res.cpus.value if res.cpus is not None else 0.0
    return JobSpec(
        entrypoint=str(w["entrypoint"]),
        runtime_env=runtime_env,
        entrypoint_num_cpus=ep_cpus,
        entrypoint_num_gpus=ep_gpus,
        needs_cpus=max(ep_cpus, cpus),
        needs_gpus=max(ep_gpus, float(acc or 0)),
        detached=recipe.kind == "serve",  # a Serve app keeps serving after its deploy script ends
        metadata={"rayctl_kind": recipe.kind, "rayctl_workload": "user"},
    )


def _env_str(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _fail(recipe, path: tuple, message: str):
    """A RecipeError at `path` in the recipe file, with its line and column."""
    raise field_error(recipe, path, message)
