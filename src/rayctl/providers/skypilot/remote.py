"""The workload on a SkyPilot cluster: where the job spec's local paths land (file
mounts, `workdir`), which env vars are secrets, and the node's `setup` and `run` scripts.

- the rayctl package is mounted at `~/.rayctl/pkg/rayctl`, other local `py_modules`
  under `~/.rayctl/py_modules/`, a local `working_dir` becomes the task's `workdir`
  (synced to `~/sky_workdir`); local input files named in a built-in workload's settings
  go under `~/.rayctl/data/`, local output paths become `/tmp/rayctl-outputs/...` (with a note).
- `setup`: a venv with rayctl's runtime requirements (same Ray version as the client).
- `run`: on every node a user Ray cluster; on the head node the head runner.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ...redact import is_secret
from ...settings import package_dir

REMOTE_HOME = "~/.rayctl"
REMOTE_PKG = "~/.rayctl/pkg"  # PYTHONPATH entry; the package lies at ~/.rayctl/pkg/rayctl
REMOTE_VENV = "~/.rayctl/venv"
REMOTE_MODULES = "~/.rayctl/py_modules"
REMOTE_WORKDIR = "~/sky_workdir"  # where SkyPilot syncs `workdir`
REMOTE_DATA = "~/.rayctl/data"
CLUSTER_OUTPUTS = "/tmp/rayctl-outputs"  # absolute and writable on every SkyPilot image

# Workload settings that name where results go: never uploaded; a local path there would
# be written on the cluster's disk and lost at teardown.
OUTPUT_KEYS = re.compile(r"(^|_)(output|outputs|out|storage|checkpoint|checkpoints|checkpoint_dir|results?)($|_)")
RAY_VERSION = "2.60.0"

# Fallback when rayctl's package metadata is not available (running from a checkout).
_FALLBACK_REQUIREMENTS = [
    f"ray[default,data,train,tune,serve]=={RAY_VERSION}", "torch==2.13.0", "transformers>=4.44",
    "pandas>=2", "pyarrow>=14", "typer>=0.12", "rich>=13", "pyyaml>=6",
]


def requirements(full: bool = True) -> list[str]:
    """What every cloud node installs: Ray and rayctl's base dependencies; with `full`
    (built-in workloads) rayctl's whole `local` extra (torch, transformers, ...). User
    code brings its own packages through the runtime env's `pip`."""
    try:
        from importlib.metadata import PackageNotFoundError, requires

        reqs = requires("rayctl") or []
    except PackageNotFoundError:
        reqs = []
    base, local = [], []
    for r in reqs:
        name, _, marker = r.partition(";")
        if not marker.strip():
            base.append(name.strip())
        elif re.search(r"extra\s*==\s*['\"]local['\"]", marker):
            local.append(name.strip())
    reqs = (base + local) if local else list(_FALLBACK_REQUIREMENTS)
    if not full:
        reqs = [r for r in reqs if r.lower().startswith(("ray", "typer", "rich", "pyyaml"))]
    return reqs


# ------------------------------------------------------------------ the workload

def _spec_dict(spec) -> dict:
    if isinstance(spec, dict):
        return dict(spec)
    return {k: getattr(spec, k) for k in ("entrypoint", "runtime_env", "entrypoint_num_cpus",
                                          "entrypoint_num_gpus", "detached", "metadata")
            if hasattr(spec, k)}


def _is_local(p) -> bool:
    return isinstance(p, str) and "://" not in p


def relocate_workload_paths(env_vars: dict, mounts: dict, notes: list) -> None:
    """Upload local input files named in the built-in workload's settings (RAYCTL_WORKLOAD).

    Absolute local paths that exist are mounted under ~/.rayctl/data/ and rewritten;
    output-like settings (output, storage, checkpoint...) on a local path get a note.
    """
    raw = env_vars.get("RAYCTL_WORKLOAD")
    if not raw:
        return
    try:
        doc = json.loads(raw)
    except ValueError:
        return
    wl = doc.get("workload") if isinstance(doc, dict) else None
    if not isinstance(wl, dict):
        return
    counter = [len(mounts)]

    def walk(obj, key=""):
        if isinstance(obj, dict):
            return {k: walk(v, str(k)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [walk(v, key) for v in obj]
        if not (isinstance(obj, str) and obj.startswith("/") and "\n" not in obj):
            return obj
        if OUTPUT_KEYS.search(key.lower()):
            dest = f"{CLUSTER_OUTPUTS}/{key}"
            notes.append(f"workload.{key} is a local path ({obj}): on the cloud it becomes {dest} on the "
                         "cluster's disk and is deleted with the cluster; use s3://... or gs://... to keep it")
            return dest  # this machine's path may not be writable there (another user, another home)
        p = Path(obj)
        if not p.exists():
            return obj
        dest = f"{REMOTE_DATA}/{counter[0]}/{p.name}"
        counter[0] += 1
        mounts[dest] = str(p)
        return dest

    doc["workload"] = walk(wl)
    if isinstance(doc["workload"].get("env"), dict):  # secret values never travel in the payload
        doc["workload"]["env"] = {k: v for k, v in doc["workload"]["env"].items() if not is_secret(str(k), v)}
    env_vars["RAYCTL_WORKLOAD"] = json.dumps(doc, separators=(",", ":"))


def remote_spec(spec, run_id: str, notes: list | None = None) -> tuple[dict, dict, str | None, dict]:
    """(spec for the head runner, file_mounts, workdir, secrets) for one job spec.

    Local paths in the runtime env are replaced by where they land on the cluster;
    credential-looking env vars are taken out (their values go to SkyPilot secrets).
    """
    import shlex
    import sys

    notes = notes if notes is not None else []
    d = _spec_dict(spec)
    ep = str(d["entrypoint"])
    for local_py in (shlex.quote(sys.executable), sys.executable):
        if ep.startswith(local_py + " "):
            ep = "python" + ep[len(local_py):]  # this machine's interpreter does not exist there
            break
    d["entrypoint"] = ep
    env = dict(d.get("runtime_env") or {})
    pkg = Path(package_dir())
    mounts: dict[str, str] = {f"{REMOTE_PKG}/rayctl": str(pkg)}
    workdir = None
    wd = env.get("working_dir")
    if wd and _is_local(wd):
        workdir = str(Path(wd).expanduser().resolve())
        env["working_dir"] = REMOTE_WORKDIR
    mods = []
    for i, m in enumerate(env.get("py_modules") or []):
        if not _is_local(m):
            mods.append(m)
            continue
        p = Path(m).expanduser().resolve()
        if p == pkg:
            mods.append(f"{REMOTE_PKG}/rayctl")
            continue
        dest = f"{REMOTE_MODULES}/{i}/{p.name}"
        mounts[dest] = str(p)
        mods.append(dest)
    if mods:
        env["py_modules"] = mods
    pip = env.get("pip")
    if isinstance(pip, str) and _is_local(pip) and Path(pip).expanduser().is_file():
        # a requirements file on this machine: its lines travel, not its path
        lines = Path(pip).expanduser().read_text(encoding="utf-8").splitlines()
        env["pip"] = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    secrets: dict[str, str] = {}
    env_vars = dict(env.get("env_vars") or {})
    env_vars.pop("RAYCTL_HOME", None)  # the client's home; the cluster uses its own
    relocate_workload_paths(env_vars, mounts, notes)
    for k in list(env_vars):
        if is_secret(k, env_vars[k]):
            secrets[k] = str(env_vars.pop(k))
    if env_vars:
        env["env_vars"] = env_vars
    elif "env_vars" in env:
        del env["env_vars"]
    head = {
        "run_id": run_id,
        "entrypoint": d["entrypoint"],
        "runtime_env": env,
        "entrypoint_num_cpus": d.get("entrypoint_num_cpus"),
        "entrypoint_num_gpus": d.get("entrypoint_num_gpus"),
        "detached": bool(d.get("detached")),
        "metadata": {str(k): str(v) for k, v in (d.get("metadata") or {}).items()},
        "secret_env": sorted(secrets),
    }
    return head, mounts, workdir, secrets


# ------------------------------------------------------------------ setup and run

def setup_script(reqs: list[str] | None = None) -> str:
    reqs = reqs if reqs is not None else requirements()
    quoted = " ".join("'" + r.replace("'", "") + "'" for r in [*reqs, "click<8.3.0"])
    return (
        "set -e\n"
        "export PATH=$HOME/.local/bin:$PATH\n"
        "command -v uv >/dev/null 2>&1 || python3 -m pip install --user -q uv\n"
        f"[ -x {REMOTE_VENV}/bin/python ] || uv venv --seed --python 3.11 {REMOTE_VENV}\n"
        f". {REMOTE_VENV}/bin/activate\n"
        f"uv pip install -q {quoted}\n"
    )


RAY_TOKEN_ENV = "RAYCTL_RAY_TOKEN"  # a task secret: the cluster's Ray auth token, the same on every node


def run_script() -> str:
    """Every node: a user Ray cluster (6379/8265) beside SkyPilot's own Ray (6380), started by SkyPilot's
    `start_cluster`: the head on SKYPILOT_NODE_RANK 0, every other node joins it (the first of
    SKYPILOT_NODE_IPS). With the task's RAYCTL_RAY_TOKEN secret (set by `rayctl launch`), Ray runs with
    token auth and each node joins with that token. On the head, the head runner then waits for all
    SKYPILOT_NUM_NODES nodes (RAYCTL_NODES_TIMEOUT_S) before it submits; it runs even when start_cluster's
    own wait for the workers gave up, so that a worker that never joins is reported as such."""
    return (
        "set -e\n"
        "export PATH=$HOME/.local/bin:$PATH\n"
        f". {REMOTE_VENV}/bin/activate\n"
        f"export PYTHONPATH={REMOTE_PKG}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        f'if [ -n "${{{RAY_TOKEN_ENV}:-}}" ]; then\n'
        f'  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="${{{RAY_TOKEN_ENV}}}"\n'
        "else\n"
        "  export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}\n"
        "fi\n"
        'if [ "${SKYPILOT_NODE_RANK:-0}" = "0" ]; then\n'
        '  ~/sky_templates/ray/start_cluster || echo "rayctl: start_cluster exited $? on the head node"\n'
        "  exec python -m rayctl.providers.skypilot.head\n"
        "fi\n"
        "~/sky_templates/ray/start_cluster\n"
    )
