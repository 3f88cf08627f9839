"""Which processes did this test session start? (for the session-end leak check and the
per-test safety nets).

A process counts as ours when its environment carries a marker this session set (every
subprocess inherits it: CLI runs, the Ray heads they start and those heads' daemons), or
when it descends from one, or shares the process session of one (Ray workers rename
themselves and may blank their environment, but stay in the head's session, which
`ray start` opens). Processes of other test sessions or other users of this machine carry
another marker or none, so they are never matched; nothing is matched by name.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid

SESSION_ENV = "RAYCTL_TEST_SESSION"
_token: str | None = None


def mark_session() -> str:
    """Put this session's marker in os.environ (inherited by everything started from now on)."""
    global _token
    if _token is None:
        _token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        os.environ[SESSION_ENV] = _token
    return _token


def session_token() -> str | None:
    return _token


def _skip_pids() -> set[int]:
    import psutil

    skip = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        skip.update(p.pid for p in psutil.Process().parents())
    return skip


def find(key: str, value: str, include_my_children: bool = False) -> list:
    """Live processes (psutil.Process) whose environment has key=value, with their
    descendants and the members of their process sessions (never this process, its
    parents, or the session this process runs in)."""
    import psutil

    skip = _skip_pids()
    me = os.getuid()
    own_sid = os.getsid(0)
    marked: dict = {}
    every: list = []
    for p in psutil.process_iter(["pid", "uids"]):
        if p.pid in skip:
            continue
        try:
            if p.info["uids"] and p.info["uids"].real != me:
                continue
            every.append(p)
            if p.environ().get(key) == value:
                marked[p.pid] = p
        except (psutil.Error, OSError):
            continue
    found = dict(marked)
    sids = set()
    for p in marked.values():
        with contextlib.suppress(psutil.Error, OSError):
            sids.add(os.getsid(p.pid))
    sids -= {own_sid, 0, 1}
    if sids:
        for p in every:
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(p.pid) in sids:
                    found.setdefault(p.pid, p)
    roots = list(found.values())
    if include_my_children:
        roots.append(psutil.Process())
    for p in roots:
        with contextlib.suppress(psutil.Error):
            for c in p.children(recursive=True):
                if c.pid not in skip:
                    found.setdefault(c.pid, c)
    return [p for p in found.values() if _alive(p)]


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(p) -> str:
    try:
        return " ".join(p.cmdline())[:200] or p.name()
    except Exception:  # noqa: BLE001 - it may be gone already
        return "?"


def _benign(p) -> bool:
    """Helpers Python keeps for the life of THIS process (multiprocessing's resource tracker
    and forkserver, started by in-process library code): they exit with pytest."""
    try:
        return p.ppid() == os.getpid() and "from multiprocessing." in " ".join(p.cmdline())
    except Exception:  # noqa: BLE001
        return False


def kill_all(procs, grace: float = 5.0) -> None:
    import psutil

    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in procs):
        time.sleep(0.1)
    for p in procs:
        if _alive(p):
            with contextlib.suppress(psutil.Error):
                p.kill()


def leftovers(grace: float = 15.0) -> list[tuple[int, str]]:
    """(pid, command line) of the processes this session started that are alive after
    `grace` s; those are then killed (the check reports a leak, it does not keep it)."""
    if _token is None:
        return []

    def scan():
        return [p for p in find(SESSION_ENV, _token, include_my_children=True) if not _benign(p)]

    deadline = time.monotonic() + grace
    left = scan()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = scan()
    out = [(p.pid, _describe(p)) for p in left]
    if left:
        kill_all(left)
        kill_all(scan(), grace=1.0)  # anything forked meanwhile
    return out
