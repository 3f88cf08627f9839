"""Cloud runs after launch: `cloud_status` (refresh a run from SkyPilot into the ledger,
police its budget), `cloud_logs`, `cloud_stop`, `down_all` (every cluster rayctl still
holds, including failed teardowns), and the names `rayctl.runs.launch` calls.

Tests inject a fake `sky` (`sky=`) and a clock; the code path is the one users run.
"""

from __future__ import annotations

import sys
import time

from ...errors import InputError, RayctlError
from ...redact import redact
from ...recipe import secret_values as recipe_secrets
from . import registry as registry
from .run import _log_path, _Run, _Stop
from .sdk import MANAGED_TERMINAL, SkyClient
from .track import LogSink, iso


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
    sink = LogSink(_log_path(ledger, r.run_id), echo=False,
                   secrets=recipe_secrets(ledger.get(r.run_id).get("recipe_path")))
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
    sink = LogSink(None, echo=True, out=out or sys.stdout, secrets=recipe_secrets(run.get("recipe_path")))
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


# ------------------------------------------------------------------ what runs/ calls for a cloud run

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
