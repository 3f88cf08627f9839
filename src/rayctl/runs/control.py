"""Control of runs and clusters after launch: `rayctl stop RUN` and `rayctl down [CLUSTER]`.

A stopped run's row ends `stopped`: its Ray job is stopped, or its Serve app deleted (and
Serve shut down when no other run serves on that cluster). `down` stops a cluster rayctl
started (the local head, or a cloud cluster through the SkyPilot provider) and the runs on
it; rayctl never stops an existing cluster it did not start.
"""

from __future__ import annotations

import contextlib
import time

from . import jobs
from .reconcile import LIVE, metrics_url, refresh, serve_fields, serve_metrics
from .secrets import remove_secrets_file
from ..errors import InputError, RayctlError
from ..ledger import FINAL, Ledger
from .cluster_api import client, probe


def client_or_none(address: str | None):
    if not address:
        return None
    try:
        probe(address, timeout=3.0)
    except InputError:
        return None
    return client(address)




def stop_run(led: Ledger, run: str) -> dict:
    """Stop a run: its Ray job, or its Serve app; the row ends `stopped`."""
    row = refresh(led, run)
    rid = row["id"]
    if row["status"] in FINAL:
        return row
    if row["target"] == "cloud":
        from ..providers.skypilot import provider as skypilot

        return skypilot.stop_run(led, rid)
    if row["status"] == "serving":
        url = metrics_url(row)
        counters = serve_metrics(url) if url else None
        fields = serve_fields(row, counters) if counters else {}
        cl = client_or_none(row.get("ray_address"))
        if cl is not None:
            _shutdown_serve(cl, row, led)
        return led.finish(rid, "stopped", reason="stopped by rayctl stop", **fields)
    if not row.get("ray_job_id"):
        return led.finish(rid, "stopped", reason="stopped by rayctl stop before its job was submitted")
    cl = client_or_none(row.get("ray_address"))
    if cl is None:
        raise RayctlError(f"cannot reach the Ray cluster at {row.get('ray_address')} to stop run {rid}")
    final = jobs.stop(cl, row["ray_job_id"])
    if final in jobs.TERMINAL or final == "PENDING":
        remove_secrets_file(rid)  # stopped (or never to start): nobody reads it any more
    row = refresh(led, rid)
    if row["status"] not in FINAL:
        row = led.finish(rid, "stopped", reason=f"stopped by rayctl stop ({jobs.stopped_words(final)})")
    elif row["status"] == "stopped":
        led.update(rid, reason="stopped by rayctl stop")
        row = led.get(rid)
    return row


def _shutdown_serve(cl, row: dict, led: Ledger) -> None:
    """Delete the run's Serve app (and Serve itself when no other app is left)."""
    try:
        info = cl.get_job_info(row["ray_job_id"])
        app = (info.metadata or {}).get("serve_app")
    except Exception:  # noqa: BLE001
        app = None
    if app:
        code = ("import ray; from ray import serve; ray.init(); "
                f"serve.delete({app!r}); "
                "serve.shutdown() if not serve.status().applications else None")
    else:
        others = [r["id"] for r in led.runs(status=("serving",))
                  if r.get("ray_address") == row.get("ray_address") and r["id"] != row["id"]]
        if others:
            raise RayctlError(f"run {row['id']} did not say which Serve app it deployed, and other runs serve on "
                              f"the same cluster ({', '.join(others)}); shutting Serve down would stop them too. "
                              "Stop them first, or delete the app with Ray's `serve` CLI")
        code = "import ray; from ray import serve; ray.init(); serve.shutdown()"
    import shlex

    sid = f"{row['id']}-stop-{int(time.time())}"
    try:
        cl.submit_job(entrypoint=f"python -c {shlex.quote(code)}", submission_id=sid,
                      metadata={"rayctl_run_id": row["id"], "rayctl_action": "serve-stop"})
    except RuntimeError as e:
        raise RayctlError(f"could not stop the Serve app of run {row['id']}: {e}") from None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if jobs.status_of(cl, sid) in jobs.TERMINAL:
            return
        time.sleep(0.3)
    raise RayctlError(f"stopping the Serve app of run {row['id']} did not finish within 60 s (Ray job {sid})")


def down(led: Ledger, cluster: str = "local") -> dict | None:
    """Stop a cluster rayctl started: its runs end `stopped`, then its processes go."""
    if cluster.startswith("http://") or cluster.startswith("https://"):
        raise InputError(f"{cluster} is an existing cluster rayctl did not start; rayctl never stops it "
                         "(`rayctl stop RUN` stops a run there)")
    if cluster != "local":
        from ..providers.skypilot import provider as skypilot

        return skypilot.down_cluster(led, cluster)
    from ..providers import local as local_provider

    state = local_provider.read_state()
    stopped_runs = []
    live = [r for r in led.runs(status=LIVE) if r.get("cluster") == "local"]
    if state is not None and local_provider.healthy(state):
        cl = None
        for r in live:
            if r.get("ray_address") != state.address:
                continue
            if r["status"] == "serving":
                url = metrics_url(r)
                counters = serve_metrics(url) if url else None
                if counters:
                    led.update(r["id"], **serve_fields(r, counters))
            elif r.get("ray_job_id"):
                cl = cl or client_or_none(state.address)
                if cl is not None:
                    with contextlib.suppress(Exception):
                        jobs.stop(cl, r["ray_job_id"], wait=10)
    result = local_provider.stop_cluster()
    for r in live:
        remove_secrets_file(r["id"])
        if led.get(r["id"])["status"] not in FINAL:
            led.finish(r["id"], "stopped", reason="rayctl down stopped the local Ray cluster")
            stopped_runs.append(r["id"])
    if result is None and not stopped_runs:
        return None
    return {**(result or {"name": "local"}), "runs_stopped": stopped_runs}
