"""A SkyPilot task (YAML-able dict) from a recipe, its plan and the workload's job spec.

Pure data: nothing here imports SkyPilot, so `rayctl plan --emit skypilot` stays fast.

What the task holds:

- `resources.ordered`: the plan's candidates, in the plan's order, as
  `{infra: cloud/region/zone, instance_type, accelerators: NAME:N, use_spot}`, so
  SkyPilot's provisioner fails over in rayctl's order. AWS zones in the catalog are
  zone IDs (`use1-az2`); they are written as this account's zone names when a mapping
  is known (`rayctl pricing refresh --cloud aws`, or SkyPilot's own az_mappings
  cache), else as IDs (what SkyPilot itself uses without AWS credentials).
- `resources.job_recovery` for batch kinds run as managed jobs: spot plans use
  `EAGER_NEXT_REGION` (after a preemption, go to the next candidate region), on-demand
  plans `FAILOVER`; `max_restarts_on_errors: 0`, so a failing workload is not retried
  (a preemption is).
- `num_nodes` from the recipe; `ports` (8000) for serve; `autostop` for cluster-mode
  runs (serve, or a batch recipe with `teardown.after: idle|never`).
- the workload's code: the rayctl package is mounted at `~/.rayctl/pkg/rayctl`, other
  local `py_modules` under `~/.rayctl/py_modules/`, a local `working_dir` becomes the
  task's `workdir` (synced to `~/sky_workdir`). pip/conda/env_vars stay in the Ray
  runtime env, so Ray installs them exactly as on the local target.
- `setup`: a venv with rayctl's runtime requirements (same Ray version as the client).
- `run`: on every node, `~/sky_templates/ray/start_cluster` starts a user Ray cluster
  (ports 6379/8265, never SkyPilot's own Ray on 6380); on the head node,
  `python -m rayctl.providers.skypilot.head` submits the *same* entrypoint and runtime
  env the local target submits, streams its logs, and stops it at the budget deadline.
- credential-looking env vars of the workload (`*TOKEN*`, `*SECRET*`, ...) go into
  `secrets` (SkyPilot redacts them); the emitted YAML writes them as `null` (pass
  `--secret NAME` to `sky launch`), rayctl's launch fills them in memory. Their values
  are in no runtime env and no `RAYCTL_JOB_SPEC` (which lists their names): SkyPilot sets
  them as env vars of `run`, where `start_cluster` starts Ray, so the job inherits them.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import re
from pathlib import Path
from typing import Any

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
SERVE_PORT = 8000
MAX_CANDIDATES = 16
RAY_VERSION = "2.60.0"

# Fallback when rayctl's package metadata is not available (running from a checkout).
_FALLBACK_REQUIREMENTS = [
    f"ray[default,data,train,tune,serve]=={RAY_VERSION}", "torch==2.13.0", "transformers>=4.44",
    "pandas>=2", "pyarrow>=14", "typer>=0.12", "rich>=13", "pyyaml>=6",
]


def cluster_name(run_id: str) -> str:
    """SkyPilot cluster / managed-job name for a run: `rayctl-<run id>`, DNS-safe."""
    s = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    return ("rayctl-" + s)[:60].rstrip("-")


def managed(recipe) -> bool:
    """Batch kinds torn down after the job run as SkyPilot managed jobs (with recovery)."""
    return recipe.kind != "serve" and recipe.teardown.after == "job"


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


# ------------------------------------------------------------------ AWS zone names

def aws_zone_names(cache_dir: Path | None = None) -> dict[str, str] | None:
    """zone ID -> zone name for this AWS account, if any mapping is known locally."""
    from ...settings import rayctl_home, skypilot_cache_dir

    files = []
    mine = (cache_dir or rayctl_home() / "pricing-cache") / "aws" / "az_mappings.csv"
    if mine.is_file():
        files.append(mine)
    sky = sorted(glob.glob(str(skypilot_cache_dir() / "aws" / "az_mappings-*.csv")), key=os.path.getmtime)
    sky = [Path(p) for p in sky if not p.endswith("-default.csv")]
    files.extend(reversed(sky))
    for f in files:
        try:
            with open(f, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except OSError:
            continue
        m = {r["AvailabilityZone"]: r["AvailabilityZoneName"] for r in rows
             if r.get("AvailabilityZone") and r.get("AvailabilityZoneName")}
        if m:
            return m
    return None


# ------------------------------------------------------------------ resources

# Clouds SkyPilot 0.14.1 can provision (sky.utils.registry.CLOUD_REGISTRY); offers on other
# clouds in a catalog (e.g. simplepod) cannot go into a task.
SKYPILOT_CLOUDS = frozenset({
    "aws", "azure", "cudo", "digitalocean", "do", "fluidstack", "gcp", "hyperbolic", "ibm", "kubernetes",
    "lambda", "mithril", "nebius", "oci", "paperspace", "primeintellect", "runpod", "scp", "seeweb",
    "shadeform", "slurm", "ssh", "vast", "verda", "vsphere", "yotta"})


def resource_entry(c, zone_names: dict | None, *, aws_region_only: bool = False) -> dict:
    zone = c.zone
    if c.cloud == "aws" and zone:
        if aws_region_only:
            zone = None
        elif zone_names is not None:
            zone = zone_names.get(zone)  # a zone this account lacks: region level
    infra = "/".join(x for x in (c.cloud, c.region, zone) if x)
    return {"infra": infra, "instance_type": c.instance_type,
            "accelerators": f"{c.accelerator}:{c.accelerator_count}", "use_spot": bool(c.spot)}


def ordered_resources(candidates, *, zone_names: dict | None = None, aws_region_only: bool = False,
                      max_candidates: int = MAX_CANDIDATES) -> tuple[list[dict], list]:
    """(ordered resource dicts, the candidates they came from), deduplicated, capped."""
    out, used, seen = [], [], set()
    for c in candidates:
        if c.cloud not in SKYPILOT_CLOUDS:
            continue
        e = resource_entry(c, zone_names, aws_region_only=aws_region_only)
        key = json.dumps(e, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out.append(e)
        used.append(c)
        if len(out) >= max_candidates:
            break
    return out, used


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


def run_script() -> str:
    return (
        "set -e\n"
        "export PATH=$HOME/.local/bin:$PATH\n"
        f". {REMOTE_VENV}/bin/activate\n"
        f"export PYTHONPATH={REMOTE_PKG}${{PYTHONPATH:+:$PYTHONPATH}}\n"
        "export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}\n"
        "# A user Ray cluster on every node (6379/8265), beside SkyPilot's own Ray (6380).\n"
        "~/sky_templates/ray/start_cluster\n"
        'if [ "${SKYPILOT_NODE_RANK}" = "0" ]; then\n'
        "  exec python -m rayctl.providers.skypilot.head\n"
        "fi\n"
    )


# ------------------------------------------------------------------ the task

def job_spec(recipe, run_id: str):
    """The workload's JobSpec (contract 1): the same entrypoint the local target submits."""
    try:
        from ...workloads import job_spec as _job_spec
    except ModuleNotFoundError as e:
        if (e.name or "").startswith("rayctl.workloads"):
            from ...errors import InputError

            raise InputError("rayctl.workloads is not available in this installation; "
                             "cannot build the workload for the cloud") from None
        raise
    import dataclasses

    if getattr(recipe, "target", "cloud") != "cloud" and dataclasses.is_dataclass(recipe):
        recipe = dataclasses.replace(recipe, target="cloud")  # built-ins build their command for the target
    return _job_spec(recipe, run_id)


def emit(recipe, plan, *, max_candidates: int = MAX_CANDIDATES) -> tuple[str, list[str]]:
    """(task YAML for `rayctl plan --emit skypilot`, notes for stderr)."""
    run_id = recipe.name
    spec = job_spec(recipe, run_id)
    zones = aws_zone_names()
    notes = []
    if zones is None and any(c.cloud == "aws" and c.zone for c in plan.candidates[:max_candidates]):
        notes.append("AWS zones are written as zone IDs (e.g. use1-az2): SkyPilot accepts those only without "
                     "AWS credentials. Run `rayctl pricing refresh --cloud aws` once (it saves this account's "
                     "zone names) before `sky launch`-ing this file; `rayctl launch --target cloud` does it "
                     "for you.")
    cfg, used = build_task(recipe, plan, run_id, spec, zone_names=zones, max_candidates=max_candidates,
                           notes=notes)
    if plan.feasible > len(used):
        notes.append(f"the task holds the first {len(used)} of {plan.feasible} candidates in the plan's order")
    if cfg.get("secrets"):
        notes.append("secrets are written as null: pass them with `sky launch --secret "
                     + " --secret ".join(cfg["secrets"]) + "`")
    head = (f"# SkyPilot task for rayctl recipe '{recipe.name}' ({recipe.kind}), from `rayctl plan --emit skypilot`.\n"
            f"# Candidates in rayctl's order (catalog {plan.catalog_source}, as of {plan.catalog_as_of}); "
            f"ranking: {plan.ranking}.\n"
            f"# Launch: sky {'jobs launch' if managed(recipe) else 'launch'} THIS.yaml\n")
    return head + to_yaml(cfg), notes


def deadline_seconds(recipe, hourly_usd: float | None) -> float | None:
    """Seconds the run may last under its budget (max_hours, max_usd at `hourly_usd`)."""
    limits = []
    if recipe.budget.max_hours:
        limits.append(recipe.budget.max_hours * 3600.0)
    if recipe.budget.max_usd and hourly_usd:
        limits.append(recipe.budget.max_usd / hourly_usd * 3600.0)
    return min(limits) if limits else None


def autostop_minutes(recipe, hourly_usd: float | None) -> int | None:
    """Cluster-mode autodown: the recipe's idle_minutes, capped by the budget (a TTL for serve)."""
    mins = []
    if recipe.teardown.after == "idle" and recipe.teardown.idle_minutes:
        mins.append(recipe.teardown.idle_minutes)
    secs = deadline_seconds(recipe, hourly_usd)
    if secs is not None:
        mins.append(max(1, int(secs // 60)))
    return min(mins) if mins else None


def task_config(recipe, plan, run_id: str, spec, **kw) -> dict[str, Any]:
    """The SkyPilot task as a dict (what `--emit skypilot` writes as YAML)."""
    return build_task(recipe, plan, run_id, spec, **kw)[0]


def build_task(recipe, plan, run_id: str, spec, *, candidates=None, zone_names: dict | None = None,
               aws_region_only: bool = False, deadline_epoch: float | None = None,
               max_candidates: int = MAX_CANDIDATES, with_secret_values: bool = False,
               notes: list | None = None) -> tuple[dict, list]:
    """(task config, the plan candidates it holds, in the task's order)."""
    cands = list(candidates if candidates is not None else plan.candidates)
    ordered, used = ordered_resources(cands, zone_names=zone_names, aws_region_only=aws_region_only,
                                      max_candidates=max_candidates)
    head, mounts, workdir, secrets = remote_spec(spec, run_id, notes)
    resources: dict[str, Any] = {"ordered": ordered}
    worst_hourly = max((c.hourly_usd for c in used), default=None)
    if managed(recipe):
        spot = any(c.spot for c in used)
        resources["job_recovery"] = {"strategy": "EAGER_NEXT_REGION" if spot else "FAILOVER",
                                     "max_restarts_on_errors": 0}
    else:
        stop = autostop_minutes(recipe, worst_hourly)
        if stop is not None:
            resources["autostop"] = {"idle_minutes": stop, "down": True}
    envs = {
        "RAYCTL_RUN_ID": run_id,
        "RAYCTL_RECIPE": recipe.name,
        "RAYCTL_KIND": recipe.kind,
        "RAYCTL_JOB_SPEC": json.dumps(head, sort_keys=True, separators=(",", ":")),
    }
    budget_s = deadline_seconds(recipe, worst_hourly)
    if budget_s is not None:
        envs["RAYCTL_BUDGET_SECONDS"] = str(int(budget_s))
    if deadline_epoch is not None:
        envs["RAYCTL_DEADLINE"] = str(int(deadline_epoch))
    if recipe.kind == "serve":
        resources["ports"] = [SERVE_PORT]
        envs["RAYCTL_SERVE_HOST"] = "0.0.0.0"
        envs["RAYCTL_SERVE_PORT"] = str(SERVE_PORT)
    cfg: dict[str, Any] = {"name": cluster_name(run_id)}
    if workdir:
        cfg["workdir"] = workdir
    cfg["num_nodes"] = recipe.resources.nodes
    cfg["resources"] = resources
    cfg["envs"] = envs
    if secrets:
        cfg["secrets"] = {k: (v if with_secret_values else None) for k, v in sorted(secrets.items())}
    cfg["file_mounts"] = mounts
    user_code = isinstance(getattr(recipe, "workload", None), dict) and "entrypoint" in recipe.workload
    cfg["setup"] = setup_script(requirements(full=not user_code))
    cfg["run"] = run_script()
    return cfg, used


def to_yaml(config: dict) -> str:
    import yaml

    class _Block(yaml.SafeDumper):
        pass

    def _str(dumper, s):
        style = "|" if "\n" in s else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)

    _Block.add_representer(str, _str)
    return yaml.dump(config, Dumper=_Block, sort_keys=False, default_flow_style=False, width=1000)
