"""Runs brought up to date with their clusters, including runs nobody follows any more.

`refresh(led, run)` is what `rayctl status` (and `logs`, `stop`) read: the row updated from
the job's status, its metrics, a Serve app's counters and its log. `reconcile(led)` does it for
every live run (`rayctl runs`, `rayctl cost report`). A run whose `rayctl launch` was killed
(kill -9), or that was detached, ends here: with its job's outcome once the job ends, its
saved log completed from Ray, or `lost` when its cluster is gone. Each launch records which
process follows it (`record_launcher`) so a dead launcher can be told from a live one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import protocol
from . import jobs
from .reporter import ANSI_RE
from .secrets import remove_secrets_file
from ..errors import InputError
from ..ledger import FINAL, Ledger
from ..recipe import secret_values
from ..redact import redact
from .cluster_api import _get
from .follow import failure_reason

LIVE = ("pending", "provisioning", "queued", "running", "serving")


def get_run(led: Ledger, run: str) -> dict:
    try:
        return led.get(run)
    except KeyError:
        matches = [r["id"] for r in led.runs(limit=2000) if r["id"].startswith(run)]
        if len(matches) > 1:
            raise InputError(f"'{run}' matches {len(matches)} runs ({', '.join(matches[:4])}"
                             f"{', ...' if len(matches) > 4 else ''}); give more of the id") from None
        raise InputError(f"no run '{run}' in the ledger ({led.path}); `rayctl runs` lists them") from None


def _cluster_gone(row: dict) -> bool:
    """True when the run's cluster was the local one and that head is no longer the one it ran on."""
    if row.get("cluster") != "local":
        return False
    from ..providers import local as local_provider

    state = local_provider.read_state()
    return state is None or state.address != row.get("ray_address") or not local_provider.healthy(state)


def metrics_url(row: dict) -> str | None:
    m = row.get("metrics") or {}
    if m.get("metrics_url"):
        return m["metrics_url"]
    return m["url"].rstrip("/") + "/-/rayctl/metrics" if m.get("url") else None


def serve_metrics(url: str, timeout: float = 3.0) -> dict | None:
    """The Serve app's counters from its `/-/rayctl/metrics` URL, or None when it does not answer."""
    try:
        doc = _get(url, "", timeout)
    except Exception:  # noqa: BLE001 - an app that is gone or does not count
        return None
    return doc if isinstance(doc, dict) else None


def serve_fields(row: dict, counters: dict) -> dict:
    metrics = dict(row.get("metrics") or {})
    metrics.update({f"serve_{k}": v for k, v in counters.items()})
    out = {"metrics": metrics}
    for k in ("input_tokens", "output_tokens"):
        if isinstance(counters.get(k), (int, float)):
            out[k] = int(counters[k])
    return out


def record_node_recovery(led: Ledger, run_id: str, worker: dict, head_cpus: int, nodes: int) -> None:
    """A lost local worker node that rayctl restarted: a `recovery` event and a new billing
    segment, as a cloud recovery is recorded (the launch's node watch, and `heal_local_nodes`)."""
    where = {"cloud": "local", "instance_type": f"local-{head_cpus}cpu"}
    led.add_event(run_id, "recovery", detail={"node": worker["ip"], "why": "local worker node lost; "
                                                 "rayctl restarted it"}, **where)
    led.open_segment(run_id, nodes=nodes, hourly_usd_per_node=0.0, **where)


def heal_local_nodes(led: Ledger, row: dict) -> list[dict]:
    """A run nobody follows (detached, or its launch was killed) on a multi-node local cluster:
    restart the worker nodes of that cluster that died, and record each as a recovery. The
    attached launch does this itself while it follows the run (its node watch); for the others
    it happens whenever `rayctl status` / `rayctl runs` look at the run. Returns the restarted
    workers' records."""
    if row.get("cluster") != "local" or int(row.get("nodes") or 1) < 2:
        return []
    from ..providers import local as local_provider

    state = local_provider.read_state()
    if state is None or not state.workers or state.address != row.get("ray_address"):
        return []  # not the cluster the run is on any more (or a one-node one)
    restarted = local_provider.restart_dead_workers()
    for w in restarted:
        record_node_recovery(led, row["id"], w, state.num_cpus, int(row["nodes"]))
    return restarted


def refresh(led: Ledger, run: str) -> dict:
    """The run's row brought up to date from its cluster (job status, metrics, Serve counters, log).

    A run nobody follows any more (its `rayctl launch` was killed, or it was detached) is
    reconciled here: once its job ends the row gets the job's outcome; while the cluster
    is alive its saved log is completed from Ray; when its cluster is gone it is `lost`.
    Talks to the cluster over HTTP with short timeouts (no Ray import).
    """
    row = get_run(led, run)
    rid = row["id"]
    if row["status"] not in LIVE:
        return row
    if row["target"] == "cloud":
        from ..providers.skypilot import provider as skypilot

        return skypilot.status_run(led, rid)  # also enforces the budget and reads Serve counters
    if row["status"] == "serving":
        heal_local_nodes(led, row)
        url = metrics_url(row)
        counters = serve_metrics(url) if url else None
        if counters is not None:
            led.update(rid, **serve_fields(row, counters))
        elif _cluster_gone(row):
            return _finish_lost(led, rid, GONE_REASON)
        return led.get(rid)
    launcher = _launcher_alive(led, rid)
    if launcher:
        return row  # its launch follows the run and records the outcome itself
    address = row.get("ray_address")
    job_id = row.get("ray_job_id")
    if not job_id:
        if launcher is None:
            return row  # a run recorded before launches said who follows them: nothing to tell
        doc = _job_doc_or_none(address, rid) if address else None
        if doc is None:
            if address and _cluster_gone(row):
                return _finish_lost(led, rid, GONE_REASON)
            return _finish_lost(led, rid, f"its rayctl launch (pid {_launcher_pid(led, rid)}) ended before "
                                          "the job was submitted (killed?)")
        job_id = rid  # submitted just before the launch died: the job's submission id is the run id
        led.update(rid, status="running", ray_job_id=job_id)
    if not address:
        return row
    try:
        doc = jobs.job_doc(address, job_id)
    except (OSError, ValueError):
        if _cluster_gone(row):
            return _finish_lost(led, rid, GONE_REASON)
        return row  # unreachable for now (an existing cluster may come back)
    if doc is None:
        return _finish_lost(led, rid, f"the Ray cluster at {address} has no job {job_id} any more "
                                      "(the cluster was restarted?)")
    st = str(doc.get("status"))
    try:
        text = jobs.job_logs(address, job_id)
    except (OSError, ValueError):
        text = None
    # the run's workload.env secrets, re-read from its recipe (rayctl stores no secret values)
    secrets = secret_values(row.get("recipe_path"))
    if text is not None:
        text = redact(text, extra=secrets)
        _complete_log(row.get("log_path"), text)
    if st not in jobs.TERMINAL:
        heal_local_nodes(led, row)  # still running with nobody following it: keep its cluster whole
        return led.get(rid)
    remove_secrets_file(rid)  # a detached job that ended before reading it
    report = protocol.Report()
    for ln in (text or "").splitlines():
        report.feed(ln)
    fields = report.ledger_fields()
    if led.get(rid)["status"] in FINAL:  # the attached launch finished it meanwhile
        return led.get(rid)
    if st == "SUCCEEDED":
        if str((doc.get("metadata") or {}).get("rayctl_detached")) == "1":
            led.update(rid, status="serving", **fields)
            return led.get(rid)
        return led.finish(rid, "succeeded", **fields)
    if st == "STOPPED":
        return led.finish(rid, "stopped", reason="the job was stopped (rayctl stop, or from Ray)", **fields)
    reason = failure_reason(doc.get("message") or "", (text or "").splitlines()[-200:], report.metrics.get("error"))
    return led.finish(rid, "failed", reason=redact(reason, extra=secrets), **fields)


GONE_REASON = "its local Ray cluster is gone (rayctl down, a reboot, or its head died) while no launch followed it"


def _finish_lost(led: Ledger, rid: str, reason: str) -> dict:
    remove_secrets_file(rid)
    if led.get(rid)["status"] not in FINAL:
        led.finish(rid, "lost", reason=reason)
    return led.get(rid)


def _job_doc_or_none(address: str, job_id: str) -> dict | None:
    try:
        return jobs.job_doc(address, job_id, timeout=3.0)
    except (OSError, ValueError):
        return None


def record_launcher(led: Ledger, run_id: str) -> None:
    """Which process follows the run, so `rayctl runs` can tell a launch that was killed (kill -9)."""
    try:
        import psutil

        ctime = psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - without psutil the run is reconciled from Ray alone
        ctime = None
    led.add_event(run_id, "launcher", detail={"pid": os.getpid(), "create_time": ctime})


def _launcher_event(led: Ledger, rid: str) -> dict | None:
    ev = [e for e in led.events(rid, "launcher") if isinstance(e.get("detail"), dict)]
    return ev[-1]["detail"] if ev else None


def _launcher_pid(led: Ledger, rid: str):
    d = _launcher_event(led, rid)
    return d.get("pid") if d else "?"


def _launcher_alive(led: Ledger, rid: str) -> bool | None:
    """Whether the `rayctl launch` that started the run still runs; None when it was not recorded."""
    d = _launcher_event(led, rid)
    if not d or not d.get("pid"):
        return None
    try:
        import psutil
    except ImportError:
        return None
    try:
        p = psutil.Process(int(d["pid"]))
        if d.get("create_time") is not None and abs(p.create_time() - float(d["create_time"])) > 1.0:
            return False  # the pid now belongs to another process
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _complete_log(log_path: str | None, text: str) -> None:
    """Make the saved log hold Ray's whole log (a killed launch left it short, a detached one empty)."""
    if not log_path:
        return
    text = ANSI_RE.sub("", text)
    lp = Path(log_path)
    try:
        size = lp.stat().st_size
    except OSError:
        size = -1
    if size >= len(text.encode("utf-8", errors="replace")):
        return
    lp.parent.mkdir(parents=True, exist_ok=True)
    tmp = lp.with_name(f".{lp.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8", errors="replace")
    os.replace(tmp, lp)


def reconcile(led: Ledger, *, budget_s: float = 30.0) -> list[str]:
    """Bring every non-final run on a Ray target up to date with its cluster (`runs`, `cost report`).

    Returns the ids whose row changed status. Bounded: each cluster call has a short
    timeout, and runs left when `budget_s` is spent wait for the next call.
    """
    changed = []
    deadline = time.monotonic() + budget_s
    for r in led.runs(status=LIVE):
        if r["target"] == "cloud" or time.monotonic() > deadline:
            continue
        try:
            after = refresh(led, r["id"])
        except Exception:  # noqa: BLE001 - listing runs never fails on one run's cluster
            continue
        if after["status"] != r["status"]:
            changed.append(r["id"])
    return changed
