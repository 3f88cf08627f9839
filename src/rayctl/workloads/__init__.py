"""What runs on the cluster: a recipe's workload turned into a Ray job spec.

`job_spec(recipe, run_id) -> JobSpec` is the one entry point. Two kinds of workload:

- **User code**: `workload: {entrypoint: "python train.py", working_dir: ./src, pip: [...],
  env: {...}}` for any recipe kind. `working_dir` is relative to the recipe file.
  Handled here.
- **Built-in runners**: no `entrypoint`; the kind's module
  (`rayctl.workloads.train|tune|batch_infer|serve`) builds the spec from its own
  settings and runs as `python -m rayctl.workloads.<module>` on the cluster.

Importing this module registers the recipe checks (`recipe.WORKLOAD_CHECKS`) for every
kind: user-code fields are checked here; built-in settings by the kind module's
`check_workload(doc, problems)` when it defines one. Nothing here imports Ray.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, Problem, RecipeError

MODULES = {"train": "train", "tune": "tune", "batch-infer": "batch_infer", "serve": "serve"}
USER_CODE_KEYS = ("entrypoint", "working_dir", "pip", "env", "entrypoint_num_cpus", "entrypoint_num_gpus")


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


def package_dir() -> str:
    """The installed `rayctl` package directory, shipped to clusters as a py_module."""
    return str(Path(__file__).resolve().parent.parent)


def is_user_code(workload: dict | None) -> bool:
    return isinstance(workload, dict) and "entrypoint" in workload


def job_spec(recipe, run_id: str) -> JobSpec:
    """The Ray job for `recipe`: user code, or the kind's built-in runner."""
    if is_user_code(recipe.workload):
        return user_job_spec(recipe, run_id)
    modname = MODULES[recipe.kind]
    try:
        mod = importlib.import_module(f"{__name__}.{modname}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{modname}":
            raise
        raise InputError(
            f"{recipe.path}: the built-in '{recipe.kind}' runner (rayctl.workloads.{modname}) is not "
            "installed in this rayctl; give the recipe your own code with workload.entrypoint") from None
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
    from ..recipe.yamlsafe import Fail, dotted, load

    line = col = None
    try:
        with open(recipe.path, "rb") as f:
            line, col = load(f.read()).where(path)
    except (OSError, Fail):
        pass
    raise RecipeError(recipe.path, [Problem(message, field=dotted(path), line=line, column=col)])


def check_user_code(doc, problems: list) -> None:
    """Recipe check for a user-code workload (types and shapes; paths are checked at launch)."""
    from ..recipe.yamlsafe import dotted

    w = doc.value.get("workload") or {}

    def problem(path: tuple, msg: str, key: bool = False) -> None:
        line, col = doc.where(("workload",) + path, key=key)
        problems.append(Problem(msg, field=dotted(("workload",) + path), line=line, column=col))

    for k in w:
        if k not in USER_CODE_KEYS:
            import difflib

            close = difflib.get_close_matches(str(k), USER_CODE_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; a workload with an entrypoint takes: " \
                                                                  f"{', '.join(USER_CODE_KEYS)}"
            problem((k,), f"unknown field '{k}' for your own code (workload.entrypoint is set){hint}", key=True)
    ep = w.get("entrypoint")
    if not isinstance(ep, str) or not ep.strip():
        problem(("entrypoint",), "expected the command to run, e.g. \"python train.py --epochs 3\"")
    wd = w.get("working_dir")
    if wd is not None and (not isinstance(wd, str) or not wd.strip()):
        problem(("working_dir",), "expected a directory path (relative to the recipe file)")
    pip = w.get("pip")
    if pip is not None:
        if isinstance(pip, list):
            for i, item in enumerate(pip):
                if not isinstance(item, str) or not item.strip():
                    problem(("pip", i), "expected a pip requirement string, e.g. \"requests>=2\"")
        elif not (isinstance(pip, str) and pip.strip()):
            problem(("pip",), "expected a list of pip requirements or a requirements.txt path")
    env = w.get("env")
    if env is not None:
        if not isinstance(env, dict):
            problem(("env",), "expected a mapping of environment variable names to values")
        else:
            for k, v in env.items():
                if not isinstance(k, str) or not k or "=" in k or "\x00" in k:
                    problem(("env", k), f"'{k}' is not a valid environment variable name", key=True)
                elif isinstance(v, (dict, list)) or v is None:
                    problem(("env", k), "expected a string, number or boolean value")
    for k in ("entrypoint_num_cpus", "entrypoint_num_gpus"):
        v = w.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            problem((k,), f"expected a number >= 0, got {v!r}")


check_user_workload = check_user_code  # the name the built-in checks look up for user-code sections

_BUILTIN_CHECKS: dict = {}  # kind -> check a kind module put in recipe.WORKLOAD_CHECKS itself


def check_workload(doc, problems: list) -> None:
    """The recipe check for every kind: user code here, built-in settings in the kind module.

    A kind module may define `check_workload(doc, problems)`, or register its check in
    `recipe.WORKLOAD_CHECKS` when imported; either way user-code workloads come here.
    """
    w = doc.value.get("workload")
    if is_user_code(w):
        check_user_code(doc, problems)
        return
    kind = doc.value.get("kind")
    modname = MODULES.get(kind)
    if not modname:
        return
    try:
        mod = importlib.import_module(f"{__name__}.{modname}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{modname}":
            raise
        return  # no built-in runner in this install: job_spec says so at launch
    _register()  # the module may have put its own check in the registry on import
    check = _BUILTIN_CHECKS.get(kind) or getattr(mod, "check_workload", None)
    if check is not None and not getattr(check, "_rayctl_dispatch", False):
        check(doc, problems)


check_workload._rayctl_dispatch = True  # type: ignore[attr-defined]


def _register() -> None:
    from .. import recipe as recipe_mod

    for kind in MODULES:
        existing = recipe_mod.WORKLOAD_CHECKS.get(kind)
        if existing is not None and not getattr(existing, "_rayctl_dispatch", False):
            _BUILTIN_CHECKS[kind] = existing
        recipe_mod.WORKLOAD_CHECKS[kind] = check_workload


_register()
