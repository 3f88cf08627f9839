"""A SkyPilot task (YAML-able dict) from a recipe, its plan and the workload's job spec.

Pure data: nothing here imports SkyPilot, so `rayctl plan --emit skypilot` stays fast.

This module builds the task and writes it as YAML; the candidates (`resources.ordered`,
AWS zone names) come from `candidates.py`, the workload's file mounts, secrets and the
nodes' setup/run scripts from `remote.py`.

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
  (ports 6379/8265, never SkyPilot's own Ray on 6380): the head on SKYPILOT_NODE_RANK 0,
  the other nodes join it; with `rayctl launch`, Ray token auth with a fresh token (the
  secret `RAYCTL_RAY_TOKEN`). On the head node, `python -m rayctl.providers.skypilot.head`
  waits for all `num_nodes` nodes (`RAYCTL_NODES_TIMEOUT_S` in `envs` for N > 1), submits
  the *same* entrypoint and runtime env the local target submits, streams its logs, and
  stops it at the budget deadline.
- credential-looking env vars of the workload (`*TOKEN*`, `*SECRET*`, ...) go into
  `secrets` (SkyPilot redacts them); the emitted YAML writes them as `null` (pass
  `--secret NAME` to `sky launch`), rayctl's launch fills them in memory. Their values
  are in no runtime env and no `RAYCTL_JOB_SPEC` (which lists their names): SkyPilot sets
  them as env vars of `run`, where `start_cluster` starts Ray, so the job inherits them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .candidates import MAX_CANDIDATES, aws_zone_names, ordered_resources
from .head import NODES_TIMEOUT_S
from .remote import RAY_TOKEN_ENV, remote_spec, requirements, run_script, setup_script

SERVE_PORT = 8000


def cluster_name(run_id: str) -> str:
    """SkyPilot cluster / managed-job name for a run: `rayctl-<run id>`, DNS-safe."""
    s = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    return ("rayctl-" + s)[:60].rstrip("-")


def managed(recipe) -> bool:
    """Batch kinds torn down after the job run as SkyPilot managed jobs (with recovery)."""
    return recipe.kind != "serve" and recipe.teardown.after == "job"


# ------------------------------------------------------------------ the task

def job_spec(recipe, run_id: str):
    """The workload's JobSpec (contract 1): the same entrypoint the local target submits."""
    from ...workloads import job_spec as _job_spec

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
    if recipe.resources.nodes > 1:
        envs["RAYCTL_NODES_TIMEOUT_S"] = str(int(NODES_TIMEOUT_S))  # the head runner's wait for every node
    if with_secret_values:  # `rayctl launch`: Ray token auth, one fresh token per cluster (never in --emit)
        import secrets as _secrets

        secrets = {**secrets, RAY_TOKEN_ENV: _secrets.token_hex(32)}
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
