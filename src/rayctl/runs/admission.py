"""Admission control on the rayctl-owned local cluster: a job starts only when what it needs is free.

Why: Ray schedules each task and actor on its own. Two jobs started together on a small
head each grab part of the CPUs (Ray Data replicas, Train workers) and then wait forever
for the rest, which the other job holds. The cluster's usage report cannot prevent
that (at admission time neither job has taken its CPUs yet), so rayctl keeps its own
book of what its admitted jobs need:

- `<cluster dir>/admissions.json` lists the admitted runs on the head (run id, address,
  CPUs/GPUs needed, the launching process), shared by every `RAYCTL_HOME` that uses
  the cluster dir; `<cluster dir>/admit.lock` (flock) makes check-and-reserve atomic
  across processes.
- An entry holds its CPUs/GPUs while its Ray job (submission id = run id) is not
  final, or, before the job is submitted, while its launching process lives. Entries
  of ended jobs, dead launchers or an earlier head are dropped when read.
- A run is admitted when (reserved + its needs) fits the cluster's totals and its
  needs fit what the cluster reports free now (a Serve app or a job started outside
  rayctl holds CPUs without an entry).

When it does not fit, `launch` refuses at once (exit 1, with the runs holding the
resources), or with `--wait SECONDS` the run is `queued` (visible in `rayctl runs`,
with what it waits for) until it fits or the wait runs out.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from . import jobs
from .capacity import ResourcesBusy, cluster_resources, describe_resources, fmt_amount
from ..errors import RayctlError

FILE = "admissions.json"
LOCK = "admit.lock"
POLL_S = 2.0
SETTLE_S = 8.0  # a job that just ended gives its CPUs back to Ray within a few seconds


class Refused(ResourcesBusy):
    """The run's CPUs/GPUs are held by other work on the cluster (exit 1)."""

    job_stopped = False


@contextlib.contextmanager
def _locked(cdir: Path):
    import fcntl

    cdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cdir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for milliseconds (a file read and a few HTTP calls)
        yield
    finally:
        os.close(fd)


def _read(cdir: Path) -> list[dict]:
    try:
        doc = json.loads((cdir / FILE).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [e for e in (doc.get("runs") or []) if isinstance(e, dict) and e.get("run_id")] \
        if isinstance(doc, dict) else []


def _write(cdir: Path, entries: list[dict]) -> None:
    tmp = cdir / f".{FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"runs": entries}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, cdir / FILE)


def _pid_alive(pid, ctime) -> bool:
    import psutil

    try:
        p = psutil.Process(int(pid))
        if ctime is not None and abs(p.create_time() - float(ctime)) > 1.0:
            return False  # the pid was reused
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError, TypeError):
        return False


def _live(e: dict, address: str) -> bool:
    if e.get("address") != address:
        return False  # admitted on an earlier head
    try:
        doc = jobs.job_doc(address, e["run_id"], timeout=3.0)
    except (OSError, ValueError):
        doc = None  # the head does not answer: the launcher decides
    else:
        if doc is not None:
            return str(doc.get("status")) not in jobs.TERMINAL
    return _pid_alive(e.get("pid"), e.get("pid_ctime"))


def live_entries(cdir: Path, address: str) -> list[dict]:
    """The admitted runs that still hold their resources (without pruning the file)."""
    return [e for e in _read(cdir) if _live(e, address)]


def _me() -> tuple[int, float | None]:
    import psutil

    with contextlib.suppress(psutil.Error):
        return os.getpid(), psutil.Process().create_time()
    return os.getpid(), None


def _fmt(x: float) -> str:
    return fmt_amount(x)


def admit(cdir: Path, address: str, run_id: str, cpus: float, gpus: float, *, wait_s: float = 0.0,
          on_wait: Callable[[str], None] | None = None) -> None:
    """Reserve `cpus`/`gpus` on the cluster for run `run_id`, or raise Refused.

    `wait_s` 0: refuse at once when other rayctl runs hold what it needs (after up to
    SETTLE_S s when only the cluster's usage report says busy). `wait_s` > 0: wait (queue)
    up to that long; `on_wait(what)` is called on every poll while it waits (it may raise
    to give up, e.g. when the run was stopped).
    """
    need = {"CPU": float(cpus or 0), "GPU": float(gpus or 0)}
    started = time.monotonic()
    pid, ctime = _me()
    while True:
        with _locked(cdir):
            entries = [e for e in _read(cdir) if e.get("run_id") != run_id]
            live = [e for e in entries if _live(e, address)]
            why = None
            if need["CPU"] or need["GPU"]:
                res = cluster_resources(address, timeout=5.0)
                why = _short(need, live, res, address)
            if why is None:
                live.append({"run_id": run_id, "address": address, "cpus": need["CPU"], "gpus": need["GPU"],
                             "pid": pid, "pid_ctime": ctime, "at": time.time()})
                _write(cdir, live)
                return
            if len(live) != len(entries):
                _write(cdir, live)  # drop what ended
        waited = time.monotonic() - started
        by_rayctl = "reserved by" in why
        limit = wait_s if wait_s > 0 else (0.0 if by_rayctl else SETTLE_S)
        if waited >= limit:
            hint = (f"; it waited {waited:.0f} s (--wait)" if wait_s > 0 else
                    "; launch with --wait SECONDS to queue for them")
            raise Refused(f"the job needs {_needs(need)} but {why}. It would wait for them; stop that work first "
                          f"(`rayctl stop RUN`) or launch again later{hint}.")
        if wait_s > 0 and on_wait is not None:
            on_wait(f"waiting for {_needs(need)}: {why}")
        time.sleep(min(POLL_S, max(0.2, limit - waited)))


def release(cdir: Path, run_id: str) -> None:
    """Drop the run's entry (its job never started, or it ended)."""
    with contextlib.suppress(OSError), _locked(cdir):
        entries = _read(cdir)
        keep = [e for e in entries if e.get("run_id") != run_id]
        if len(keep) != len(entries):
            _write(cdir, keep)


def _needs(need: dict) -> str:
    return " and ".join(f"{_fmt(v)} {k}(s)" for k, v in need.items() if v) or "nothing"


def _short(need: dict, live: list[dict], res: dict | None, address: str) -> str | None:
    """Why `need` does not fit now, or None when it does."""
    for k, key in (("CPU", "cpus"), ("GPU", "gpus")):
        if not need[k]:
            continue
        total = res.get(k, (0.0, 0.0))[1] if res else None
        reserved = sum(float(e.get(key) or 0) for e in live)
        if total is not None and reserved + need[k] > total + 1e-9:
            holders = ", ".join(f"{e['run_id']} ({_fmt(float(e.get(key) or 0))} {k})" for e in live
                                if float(e.get(key) or 0) > 0)
            return (f"{_fmt(reserved)} of the {_fmt(total)} {k}s of the Ray cluster at {address} are held by other "
                    f"work: reserved by running rayctl job(s) {holders}")
        if res is not None:
            used, tot = res.get(k, (0.0, 0.0))
            if need[k] > tot - used + 1e-9:
                return (f"only {_fmt(tot - used)} of {_fmt(tot)} {k}s are free on the Ray cluster at {address}; "
                        f"the rest are held by other work ({describe_resources(res)})")
    return None


def holders_hint(cdir: Path, address: str, run_id: str) -> str:
    try:
        live = [e for e in live_entries(cdir, address) if e["run_id"] != run_id]
    except RayctlError:
        return ""
    return f" (rayctl runs on it: {', '.join(e['run_id'] for e in live[:5])})" if live else ""
