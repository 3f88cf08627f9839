"""The cloud target: run a recipe on the plan's offers through SkyPilot, and never leak a cluster.

Entry points (called by `rayctl.runs.launch` and the CLI):

- `launch_cloud(recipe, plan, ledger, run_id, *, detach, quiet) -> dict` (the final ledger row)
- `cloud_status(run)`, `cloud_logs(run, follow)`, `cloud_stop(run)`, `down_all(ledger)`

How a launch goes:

1. Credentials (`cloud_check`, seconds, no API server): candidates on clouds without
   usable credentials are dropped; none left -> `InputError` (exit 2) saying which
   clouds are enabled and how to fix it. GCP candidates over the region's free GPU quota
   (from `rayctl pricing refresh`) for nodes x GPUs are dropped too.
2. The task (`skypilot_task`): the remaining candidates in plan order as
   `resources.ordered`, so SkyPilot fails over in rayctl's order.
3. The cluster is registered (`cloud_registry`) *before* SkyPilot is asked, then:
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

import sys
import time

from ...errors import InputError, Interrupted, JobFailed, RayctlError
from ...redact import redact
from . import registry as registry
from . import task as tasks
from .candidates import aws_zone_names
from .run import POLL_S, BudgetExceeded, _log_path, _provider_error, _Run, _say, _Stop  # noqa: F401
from .sdk import MANAGED_TERMINAL, SkyClient
from .track import LogSink, iso


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
    sink = LogSink(_log_path(ledger, run_id), echo=not quiet)
    run = _Run(ledger, run_id, client, name, mode, used, recipe.resources.nodes, sink,
               {v: k for k, v in (zone_names or {}).items()}, clock, sleep, poll_s, quiet,
               budget=recipe.budget, start=start)
    ledger.update(run_id, status="provisioning", cluster=name)
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


# ------------------------------------------------------------------ status / logs / stop / down

def _registry_row(ledger, run: dict) -> dict | None:
    return registry.for_run(ledger, run["id"]) if run.get("id") else None


def _ledger(ledger):
    if ledger is not None:
        return ledger
    from ...ledger import Ledger

    return Ledger()


def cloud_status(run: dict, ledger=None, *, sky=None, clock=time.time) -> dict:
    """Refresh a cloud run from SkyPilot into the ledger (location, recoveries, outcome, budget).

    Returns {run_id, cluster, mode, job_id, sky_status, status, cloud, region, zone,
    instance_type, recoveries, cost_usd, endpoint}. A run past its budget is stopped
    and torn down here (detached runs are policed when `rayctl status` runs).
    """
    ledger = _ledger(ledger)
    row = _registry_row(ledger, run)
    if row is None:
        raise InputError(f"run {run.get('id')}: no cloud cluster recorded for it")
    client = SkyClient(sky)
    r = _Run.from_registry(ledger, row, client, clock=clock)
    sky_status = None
    endpoint = None
    final = ledger.get(r.run_id)["status"] in ("succeeded", "failed", "interrupted", "stopped")
    if row["mode"] == "managed" and row.get("job_id") is None:
        ids = client.managed_by_name(row["name"])  # the launch was cut off before it learnt the job id
        if ids:
            registry.update(ledger, row["name"], job_id=ids[0])
            row = registry.get(ledger, row["name"])
            r.job_id = ids[0]
    if row["mode"] == "managed":
        rec = client.managed_record(int(row["job_id"])) if row.get("job_id") is not None else None
        if rec is not None:
            sky_status = rec.status
            if not final:
                r.tracker.observe(rec)
                if rec.status in MANAGED_TERMINAL:
                    r.sink = _fetch_final_logs(ledger, r, client)
                    try:
                        r._managed_done(rec)
                    except RayctlError:
                        pass
                    final = True
    else:
        sky_status = client.cluster_status(row["name"])
        if sky_status is None and row["state"] in registry.LIVE:
            registry.update(ledger, row["name"], state="down", detail="gone (autodown or deleted outside rayctl)")
            if not final:
                ledger.finish(r.run_id, "stopped", "cluster gone (autodown or deleted outside rayctl)",
                              ended_at=iso(clock()))
                final = True
        elif sky_status == "UP" and ledger.get(r.run_id)["kind"] == "serve":
            from .task import SERVE_PORT

            endpoint = client.endpoint(row["name"], SERVE_PORT)
            cur = ledger.get(r.run_id)
            if endpoint and not final:
                url = endpoint if "://" in endpoint else f"http://{endpoint}"
                metrics = {**(cur.get("metrics") or {}), "url": url}
                ledger.update(r.run_id, status="serving", metrics=metrics)
                _serve_counters(ledger, r.run_id)
    if not final:
        try:
            r.check_budget()
        except _Stop as s:
            note = r.teardown(s.reason)
            ledger.finish(r.run_id, s.status, s.reason + note, ended_at=iso(clock()))
    cur = ledger.get(r.run_id)
    return {"run_id": r.run_id, "cluster": row["name"], "mode": row["mode"], "job_id": row.get("job_id"),
            "sky_status": sky_status, "status": cur["status"], "cloud": cur.get("cloud"),
            "region": cur.get("region"), "zone": cur.get("zone"), "instance_type": cur.get("instance_type"),
            "recoveries": len(ledger.events(cur["id"], kind="recovery")),
            "cost_usd": round(ledger.cost_of(cur["id"]), 6), "endpoint": endpoint,
            "registry_state": registry.get(ledger, row["name"])["state"]}


def _fetch_final_logs(ledger, r: "_Run", client: SkyClient) -> LogSink:
    """A detached run ended: save its logs (redacted) to the run's log file and parse its metrics."""
    sink = LogSink(_log_path(ledger, r.run_id), echo=False)
    sink.write(f"---- rayctl: the job's logs, fetched from SkyPilot after managed job {r.job_id} ended ----\n")
    try:
        client.managed_logs(int(r.job_id), False, sink)
    except Exception as e:  # the logs are a convenience; the outcome comes from the job record
        sink.write(f"rayctl: could not fetch the job's logs: {type(e).__name__}: {redact(str(e))[:200]}\n")
    sink.close()
    return sink


def _serve_counters(ledger, run_id: str) -> None:
    """Contract 3: read the serve app's GET /-/rayctl/metrics into the ledger (best effort, 5 s)."""
    import json
    import urllib.request

    cur = ledger.get(run_id)
    url = (cur.get("metrics") or {}).get("url")
    if cur["kind"] != "serve" or not url:
        return
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/-/rayctl/metrics", timeout=5) as resp:
            doc = json.loads(resp.read().decode("utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    except (OSError, ValueError) as e:  # unreachable app, HTTP error, not JSON: the counters stay as they were
        why = f"{type(e).__name__}: {redact(str(e))[:200]}"
        sys.stderr.write(f"rayctl: warning: run {run_id}: could not read the serve app's token counters at "
                         f"{url}/-/rayctl/metrics ({why}); its ledger counters are not updated\n")
        ledger.add_event(run_id, "serve_metrics_unreadable", detail={"url": url, "error": why})
        return
    fields = {k: int(doc[k]) for k in ("input_tokens", "output_tokens") if isinstance(doc.get(k), (int, float))}
    ledger.update(run_id, metrics={**(cur.get("metrics") or {}), **{k: v for k, v in doc.items()
                                                                  if isinstance(v, (int, float, str))}}, **fields)


def cloud_logs(run: dict, follow: bool = False, ledger=None, *, sky=None, out=None) -> int | None:
    """Print a cloud run's job logs (redacted) from SkyPilot; returns SkyPilot's exit code."""
    ledger = _ledger(ledger)
    row = _registry_row(ledger, run)
    if row is None or row.get("job_id") is None:
        raise InputError(f"run {run.get('id')}: no cloud job recorded for it")
    client = SkyClient(sky)
    sink = LogSink(None, echo=True, out=out or sys.stdout)
    try:
        if row["mode"] == "managed":
            return client.managed_logs(int(row["job_id"]), follow, sink)
        return client.cluster_logs(row["name"], int(row["job_id"]), follow, sink)
    finally:
        sink.close()


def cloud_stop(run: dict, ledger=None, *, sky=None, clock=time.time, why: str = "stopped by the user") -> dict:
    """Stop a cloud run and tear its cluster down; returns the ledger row."""
    ledger = _ledger(ledger)
    row = _registry_row(ledger, run)
    if row is None:
        raise InputError(f"run {run.get('id')}: no cloud cluster recorded for it")
    r = _Run.from_registry(ledger, row, SkyClient(sky), clock=clock, quiet=False)
    if ledger.get(r.run_id)["status"] == "serving":
        _serve_counters(ledger, r.run_id)  # the last request/token counts, before the app goes
    note = r.teardown(why)
    cur = ledger.get(r.run_id)
    if cur["status"] not in ("succeeded", "failed", "interrupted", "stopped"):
        cur = ledger.finish(r.run_id, "stopped", why + note, ended_at=iso(clock()))
    if note:
        raise RayctlError(f"{row['name']}: teardown failed{note}", exit_code=1)
    return cur


def down_all(ledger=None, *, sky=None, clock=time.time) -> list[dict]:
    """Tear down every cluster rayctl created that is not known to be down.

    Returns one dict per cluster: {name, run_id, mode, result ('down' | 'failed: ...')}.
    """
    ledger = _ledger(ledger)
    rows = registry.all_rows(ledger, live_only=True)
    if not rows:
        return []
    client = SkyClient(sky)
    out = []
    for row in rows:
        r = _Run.from_registry(ledger, row, client, clock=clock, quiet=True)
        note = r.teardown("rayctl down --all")
        if r.run_id:
            try:
                cur = ledger.get(r.run_id)
                if cur["status"] not in ("succeeded", "failed", "interrupted", "stopped"):
                    ledger.finish(r.run_id, "stopped", "rayctl down --all" + note, ended_at=iso(clock()))
            except KeyError:
                pass
        out.append({"name": row["name"], "run_id": row["run_id"], "mode": row["mode"],
                    "result": "down" if not note else "failed" + note})
    return out


# ------------------------------------------------------------------ names launch.py may call

def stop_run(ledger, run_id: str, **kw) -> dict:
    """`rayctl stop RUN` for a cloud run (= cloud_stop)."""
    return cloud_stop(ledger.get(run_id), ledger, **kw)


def status_run(ledger, run_id: str, **kw) -> dict:
    """`rayctl status RUN` for a cloud run: refresh from SkyPilot, return the ledger row."""
    cloud_status(ledger.get(run_id), ledger, **kw)
    return ledger.get(run_id)


def down_cluster(ledger, name: str, *, sky=None, clock=time.time) -> dict:
    """`rayctl down NAME` for one cloud cluster rayctl created."""
    row = registry.get(ledger, name)
    if row is None:
        known = ", ".join(r["name"] for r in registry.all_rows(ledger, live_only=True)) or "none"
        raise InputError(f"no cloud cluster '{name}' in rayctl's registry (live ones: {known}); "
                         "`rayctl cloud clusters --all` lists every one")
    r = _Run.from_registry(ledger, row, SkyClient(sky), clock=clock, quiet=False)
    note = r.teardown(f"rayctl down {name}")
    if r.run_id:
        cur = ledger.get(r.run_id)
        if cur["status"] not in ("succeeded", "failed", "interrupted", "stopped"):
            ledger.finish(r.run_id, "stopped", f"rayctl down {name}" + note, ended_at=iso(clock()))
    if note:
        raise RayctlError(f"{name}: teardown failed{note}", exit_code=1)
    return registry.get(ledger, name)
