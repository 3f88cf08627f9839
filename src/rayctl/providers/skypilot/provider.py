"""The cloud target: run a recipe on the plan's offers through SkyPilot, and never leak a cluster.

Entry points (called by `rayctl.runs` and the CLI):

- `launch_cloud(recipe, plan, ledger, run_id, *, detach, quiet) -> dict` (the final ledger row)
- `cloud_status(run)`, `cloud_logs(run, follow)`, `cloud_stop(run)`, `down_all(ledger)` (in `operations.py`)

How a launch goes:

1. Credentials (`planning.credentials`, seconds, no API server): candidates on clouds without
   usable credentials are dropped; none left -> `InputError` (exit 2) saying which
   clouds are enabled and how to fix it. GCP candidates over the region's free GPU quota
   (from `rayctl pricing refresh`) for nodes x GPUs are dropped too.
2. The task (`skypilot.task`): the remaining candidates in plan order as
   `resources.ordered`, so SkyPilot fails over in rayctl's order.
3. The cluster is registered (`registry`, in the ledger) *before* SkyPilot is asked, then:
   - train / tune / batch-infer with `teardown.after: job` (the default): a SkyPilot
     managed job (`sky.jobs.launch`) with a recovery strategy. SkyPilot's controller
     relaunches a preempted spot cluster on the next candidate; the workload resumes
     from its checkpoint; the controller tears the cluster down when the job ends.
   - serve, and batch recipes that keep their cluster (`teardown.after: idle|never`):
     `sky.launch` of a cluster, with autodown after `idle_minutes` and/or the budget
     (a serve cluster's time-to-live); serve prints the public endpoint.
4. While attached, rayctl polls SkyPilot every `RAYCTL_CLOUD_POLL_S` (20) seconds,
   streams the job's logs into the run's log file (redacted), records where the cluster
   runs, each preemption and recovery (ledger segments + events), and enforces the
   budget: when the cost so far plus one more poll interval would pass `budget.max_usd`,
   or the time would pass `budget.max_hours`, it stops the job and tears down.
   Independently, the head node stops the job at an absolute deadline (`max_hours`, and
   `max_usd` at the cheapest candidate's $/h), so a detached run or a dead client cannot
   overspend by more than the price spread between candidates.
5. Any failure after provisioning started -- a SkyPilot/provider error, the job failing,
   Ctrl-C, the budget -- ends in teardown (managed: `sky.jobs.cancel`, cluster:
   `sky.down`), the ledger row finished as failed/interrupted/stopped, and a raised
   RayctlError. If teardown itself fails, a loud message naming the cluster and the
   command to delete it is printed and recorded (event `teardown_failed`, registry state
   `teardown_failed`), and `rayctl down --all` retries it.

Tests inject a fake `sky` (`sky=`), a credential checker (`checker=`), a clock and a
sleep function; the code path is the one users run.
"""

from __future__ import annotations

import time

from ...errors import InputError, Interrupted, JobFailed, RayctlError
from ...redact import redact, secret_values as env_secret_values
from . import registry as registry
from . import task as tasks
from .candidates import aws_zone_names
from .run import POLL_S, BudgetExceeded, _log_path, _provider_error, _Run, _say, _Stop  # noqa: F401
from .sdk import SkyClient
from .track import LogSink, iso
from .operations import (cloud_logs, cloud_status, cloud_stop, down_all, down_cluster,  # noqa: F401  (entry points)
                         status_run, stop_run)


# ------------------------------------------------------------------ credentials and candidates

def usable_candidates(recipe, plan, checker=None) -> tuple[list, dict]:
    """(candidates on clouds with credentials and enough GCP quota, check results)."""
    from ...planning import credentials as cloud_check

    checker = checker or cloud_check.check
    clouds = list(dict.fromkeys(c.cloud for c in plan.candidates))
    results = checker(clouds)
    enabled = {c for c, r in results.items() if r.enabled}
    if not enabled:
        raise InputError(
            f"{recipe.path}: cannot launch '{recipe.name}' on the cloud: no usable credentials for the "
            f"clouds in its plan ({', '.join(clouds)}). Nothing was started.\n"
            + redact(cloud_check.summary(results))
            + "\nAfter fixing credentials, check with `rayctl cloud check` (or `sky check`). "
              "To run on this machine instead, use --target local.")
    cands = [c for c in plan.candidates if c.cloud in enabled]
    from ...planning import price_cache

    kept = [c for c in cands if price_cache.quota_allows(c, recipe.resources.nodes) is not False]
    if not kept:
        raise InputError(f"{recipe.path}: every candidate on an enabled cloud ({', '.join(sorted(enabled))}) "
                         "lacks GPU quota for "
                         f"{recipe.resources.nodes} node(s) (from `rayctl pricing refresh`); request more quota "
                         "or change resources.")
    return kept, results


def _aws_zone_names(cands, quiet: bool):
    """(zone ID -> name mapping or None, region_only) for the AWS candidates."""
    if not any(c.cloud == "aws" and c.zone for c in cands):
        return None, False
    m = aws_zone_names()
    if m is not None:
        return m, False
    try:
        from ...planning.refresh import aws as aws_prices

        m = aws_prices.fetch_zone_mapping(sorted({c.region for c in cands if c.cloud == "aws"}))
        if m:
            return m, False
    except Exception as e:
        _say(f"could not read this AWS account's zone names ({redact(type(e).__name__)}); "
             "AWS candidates are tried per region, not per zone", quiet)
    return None, True


# ------------------------------------------------------------------ launch

def launch_cloud(recipe, plan, ledger, run_id: str, *, detach: bool = False, quiet: bool = False,
                 sky=None, checker=None, spec=None, zone_names=None, clock=time.time, sleep=time.sleep,
                 poll_s: float | None = None, max_candidates: int = tasks.MAX_CANDIDATES) -> dict:
    """Run `recipe` on the cloud through SkyPilot; returns the final ledger row.

    The run row `run_id` must exist (created by `rayctl.runs.launch`). Raises InputError (2)
    without starting anything when credentials are missing, JobFailed (1) when the job
    or the provider fails, BudgetExceeded (1) when the budget stopped it, Interrupted
    (130) on Ctrl-C; in every case after provisioning started, the cluster is torn down
    first (or a loud message names it).
    """
    poll_s = POLL_S if poll_s is None else poll_s
    cands, _checks = usable_candidates(recipe, plan, checker)
    if zone_names is None:
        zone_names, region_only = _aws_zone_names(cands, quiet)
    else:
        region_only = False
    if spec is None:
        spec = tasks.job_spec(recipe, run_id)
    start = clock()
    cheapest = min((c.hourly_usd for c in cands[:max_candidates]), default=None)
    budget_s = tasks.deadline_seconds(recipe, cheapest)
    notes: list[str] = []
    config, used = tasks.build_task(recipe, plan, run_id, spec, candidates=cands, zone_names=zone_names,
                                    aws_region_only=region_only,
                                    deadline_epoch=(start + budget_s) if budget_s is not None else None,
                                    max_candidates=max_candidates, with_secret_values=True, notes=notes)
    for n in notes:
        _say(f"warning: {n}", quiet)
    name = config["name"]
    mode = "managed" if tasks.managed(recipe) else "cluster"
    try:
        client = SkyClient(sky)
        task = client.task(config)
    except ImportError as e:
        raise InputError(f"the cloud target needs SkyPilot: pip install 'rayctl[cloud]' ({e.name} is missing)") \
            from None
    except Exception as e:  # SkyPilot's own validation of the task; nothing was started
        secret_values = tuple(str(v) for v in (config.get("secrets") or {}).values() if v)
        why = f"SkyPilot rejected the task: {type(e).__name__}: {redact(str(e), secret_values).strip()[:400]}"
        ledger.finish(run_id, "failed", why, ended_at=iso(clock()))
        raise JobFailed(f"{recipe.name}: {why}. Nothing was started; `rayctl plan {recipe.path} --emit skypilot` "
                        "shows the task") from None
    autostop = (config["resources"].get("autostop") or {}).get("idle_minutes")
    registry.add(ledger, name, run_id=run_id, mode=mode, nodes=recipe.resources.nodes,
                 candidates=_cands_json(used), detail=f"zone_names={_zone_json(zone_names)}")
    # the values SkyPilot hands the job as secrets, masked in every line of its log
    shown_secrets = env_secret_values({**(recipe.workload.get("env") or {}), **(config.get("secrets") or {})})
    sink = LogSink(_log_path(ledger, run_id), echo=not quiet, secrets=shown_secrets)
    run = _Run(ledger, run_id, client, name, mode, used, recipe.resources.nodes, sink,
               {v: k for k, v in (zone_names or {}).items()}, clock, sleep, poll_s, quiet,
               budget=recipe.budget, start=start)
    # stored with the run, so that `status`/`stop` of a detached run police the budget it started with
    ledger.update(run_id, status="provisioning", cluster=name, nodes=recipe.resources.nodes,
                  budget={"max_usd": recipe.budget.max_usd, "max_hours": recipe.budget.max_hours})
    ledger.add_event(run_id, "launch", at=iso(start), detail={"cluster": name, "mode": mode, "candidates": len(used),
                                               "first": used[0].label if used else None})
    _say(f"launching {name} ({'managed job' if mode == 'managed' else 'cluster'}; {len(used)} candidate "
         f"offer(s), first {used[0].label}); SkyPilot's API server may take ~30 s to start on first use", quiet)
    try:
        if mode == "managed":
            return run.managed(task, detach)
        return run.cluster(task, detach, kind=recipe.kind, teardown_after=recipe.teardown.after,
                           autostop=autostop)
    except _Stop as s:
        note = run.teardown(s.reason)
        ledger.finish(run_id, s.status, s.reason + note, ended_at=iso(clock()), **sink.ledger_fields())
        s.exc.message += note
        raise s.exc from None
    except KeyboardInterrupt:
        note = run.teardown("interrupted (Ctrl-C)")
        ledger.finish(run_id, "interrupted", "interrupted by the user (Ctrl-C)" + note,
                      ended_at=iso(clock()), **sink.ledger_fields())
        raise Interrupted(f"interrupted; {name} " + ("was torn down" if not note else "teardown FAILED" + note)
                          ) from None
    except RayctlError as e:
        row = registry.get(ledger, name)
        if row is not None and row["state"] in ("launching", "up") and not (mode == "cluster" and
                                                                             ledger.get(run_id)["status"] in
                                                                             ("serving", "succeeded")):
            note = run.teardown(f"error: {e.message.splitlines()[0][:200]}")
            if ledger.get(run_id)["status"] not in ("succeeded", "failed", "interrupted", "stopped"):
                ledger.finish(run_id, "failed", e.message.splitlines()[0][:300] + note, ended_at=iso(clock()))
        raise
    except Exception as e:  # SkyPilot / provider errors: redacted, one paragraph
        why = _provider_error(e, len(used))
        ledger.add_event(run_id, "provider_error", at=iso(clock()), detail={"error": why})
        note = run.teardown(f"provider error: {why}")
        ledger.finish(run_id, "failed", why + note, ended_at=iso(clock()), **sink.ledger_fields())
        raise JobFailed(f"{recipe.name}: cloud launch failed: {why}" + note) from None
    finally:
        sink.close()


def _cands_json(cands) -> str:
    import json

    return json.dumps([{**c.as_dict(), "label": c.label} for c in cands], sort_keys=True)


def _zone_json(m) -> str:
    import json

    return json.dumps(m or {}, sort_keys=True)
