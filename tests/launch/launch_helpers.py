"""Helpers for launch tests (imported by the tests; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def ledger_rows(home: Path) -> list[dict]:
    from rayctl.ledger import Ledger

    with Ledger(home / "ledger.db") as led:
        return led.runs()


def ray_job_status(address: str, job_id: str) -> str:
    """The job's status as the Ray dashboard's REST API reports it."""
    import urllib.request

    from rayctl.runs.cluster_api import auth_headers

    req = urllib.request.Request(f"{address}/api/jobs/{job_id}", headers=auth_headers(address))
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=10) as r:
        return json.loads(r.read())["status"]


def wait_for(pred, timeout: float, what: str, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def processes_with(marker: str) -> list:
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and marker in " ".join(p.info["cmdline"] or []) \
                    and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def popen_cli(*args, home: Path, env: dict | None = None, sigint_ignored: bool = False) -> subprocess.Popen:
    """`rayctl ARGS` as a background subprocess (for signals and concurrent commands).

    `sigint_ignored`: start it the way a shell starts a background job (SIGINT ignored),
    whatever the test process itself inherited.
    """
    import signal

    full = dict(os.environ, RAYCTL_HOME=str(home), COLUMNS="200")
    full.pop("RAYCTL_DEBUG", None)
    full.update(env or {})
    # Like a command typed at a terminal: Ctrl-C (SIGINT) is live even when pytest itself was
    # started in the background (`pytest &`), where it inherits SIGINT ignored; or, with
    # sigint_ignored, like a background job of a shell.
    pre = _sigint_ignored if sigint_ignored else _sigint_default
    return subprocess.Popen([sys.executable, "-m", "rayctl", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full, preexec_fn=pre)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sigint_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
