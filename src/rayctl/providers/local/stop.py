"""Stopping the local cluster: exactly its own processes, never `ray stop`.

Every process of the cluster carries `RAYCTL_LOCAL_CLUSTER=<token>` in its environment
(the head's daemons, Ray workers, job drivers and their children inherit it), and the
head's daemons share the session of `ray start`. `ray stop` would kill every Ray on the
machine.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from .state import NAME, TOKEN_ENV, Status, cluster_dir, locked, read_state, temp_dir_for

STOP_GRACE_S = 8.0


def own_processes(token: str, sid: int | None = None) -> list:
    """The cluster's processes (psutil.Process), never this process or its parents.

    Three ways in, checked against each other: the head's session (`ray start` runs in
    a new session, so its daemons and the workers the raylet forks share the session
    id `sid`), the token in the environment (job drivers run in sessions of their own;
    processes that rename themselves, like Ray workers, may blank their environment),
    and the descendants of both. The session counts only when one of its processes
    carries the token, so a recycled session id never matches someone else's processes.
    """
    import psutil

    skip = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        skip.update(p.pid for p in psutil.Process().parents())
    me = os.getuid() if hasattr(os, "getuid") else None
    by_token, by_session = {}, {}
    for p in psutil.process_iter(["pid", "uids"]):
        if p.pid in skip:
            continue
        try:
            if me is not None and p.info["uids"] and p.info["uids"].real != me:
                continue
            if sid and sid > 1 and os.getsid(p.pid) == sid:
                by_session[p.pid] = p
            if p.environ().get(TOKEN_ENV) == token:
                by_token[p.pid] = p
        except (psutil.Error, OSError):
            continue
    found = dict(by_token)
    if set(by_session) & set(by_token):
        found.update(by_session)
    for p in list(found.values()):
        with contextlib.suppress(psutil.Error):
            for c in p.children(recursive=True):
                if c.pid not in skip:
                    found.setdefault(c.pid, c)
    return list(found.values())


def alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_token(token: str, sid: int | None = None, grace: float = STOP_GRACE_S) -> int:
    """SIGTERM every process of the cluster, SIGKILL what is left after `grace` s; returns how many."""
    import psutil

    if not token:
        return 0
    procs = own_processes(token, sid)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in procs):
        time.sleep(0.1)
    for p in procs:
        if alive(p):
            with contextlib.suppress(psutil.Error):
                p.kill()
    # Anything forked while we were stopping (a worker the raylet just spawned).
    late = [p for p in own_processes(token, sid) if alive(p)]
    for p in late:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return len(procs) + len(late)


def processes(home: Path | None = None) -> list:
    """Live processes of the local cluster (psutil.Process), for diagnostics and tests."""
    state = read_state(home)
    if state is None:
        return []
    return [p for p in own_processes(state.token, state.pid) if alive(p)]


def stop_cluster(home: Path | None = None, status: Status | None = None) -> dict | None:
    """Stop the local cluster's own processes and clean up; None when there was none."""
    cdir = cluster_dir(home)
    if not cdir.exists():
        return None
    with locked(cdir, status=status):
        state = read_state(home)
        if state is None:
            return None
        if status:
            status(f"stopping the local Ray cluster at {state.address}")
        n = kill_token(state.token, state.pid)
        (cdir / "state.json").unlink(missing_ok=True)
        temp = Path(state.temp_dir)
        import shutil

        if temp in (cdir / "ray", temp_dir_for(cdir)) or temp.name.startswith("rayctl-"):  # only a dir rayctl made
            shutil.rmtree(temp, ignore_errors=True)
        for w in state.workers:  # worker nodes' own temp dirs: `<head temp>-<octet>`
            wt = Path(w.get("temp_dir") or "")
            if wt.name.startswith((f"{temp.name}-", "rayctl-")):
                shutil.rmtree(wt, ignore_errors=True)
        return {"name": NAME, "address": state.address, "processes": n, "session": state.session_name}
