"""Helpers for launch tests (imported by the tests; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.err, result.err
    assert "Traceback" not in result.out, result.out


def ledger_rows(home: Path) -> list[dict]:
    from rayctl.ledger import Ledger

    with Ledger(home / "ledger.db") as led:
        return led.runs()


def ray_job_status(address: str, job_id: str) -> str:
    """The job's status as the Ray dashboard's REST API reports it."""
    import urllib.request

    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"{address}/api/jobs/{job_id}", timeout=10) as r:
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


def popen_cli(*args, home: Path, env: dict | None = None) -> subprocess.Popen:
    """`rayctl ARGS` as a background subprocess (for signals and concurrent commands)."""
    full = dict(os.environ, RAYCTL_HOME=str(home), COLUMNS="200")
    full.pop("RAYCTL_DEBUG", None)
    full.update(env or {})
    # Like a command typed at a terminal: Ctrl-C (SIGINT) is live even when pytest itself was
    # started in the background (`pytest &`), where it inherits SIGINT ignored.
    return subprocess.Popen([sys.executable, "-m", "rayctl", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full, preexec_fn=_sigint_default)


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
