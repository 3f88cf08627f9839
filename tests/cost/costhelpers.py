"""Helpers for the cost tests: ledger timestamps and runs recorded as rayctl records them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rayctl.ledger import Ledger


def _shared_conftest():
    """tests/conftest.py, loaded by path: several test folders have a module named `conftest`,
    so `from conftest import ...` would pick whichever pytest imported last."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_rayctl_shared_conftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


assert_no_traceback = _shared_conftest().assert_no_traceback


def ts(hhmm: str, day: str = "2025-03-01") -> str:
    """Ledger timestamp (UTC, microseconds, Z) at HH:MM[:SS] of `day`."""
    if hhmm.count(":") == 1:
        hhmm += ":00"
    return f"{day}T{hhmm}.000000Z"


def local_batch_infer_run(led: Ledger, recipe_path, *, zero_segment: bool, start: str | None = None,
                          end: str | None = None) -> str:
    """A finished batch-infer run on the local target, recorded as the local launch records one:
    running on the rayctl-owned local Ray head ($0/h), the workload's metrics line stored
    (rows, input_tokens, output_tokens), then finished as succeeded with its duration."""
    import hashlib

    start = start or ts("10:00")
    end = end or ts("10:01:40")
    data = open(recipe_path, "rb").read()
    rid = led.start_run(recipe="tiny-infer", kind="batch-infer", target="local", status="running",
                        started_at=start, recipe_path=str(recipe_path),
                        recipe_sha256=hashlib.sha256(data).hexdigest(), nodes=1, hourly_usd=0.0,
                        cluster="local", ray_address="http://127.0.0.2:8265", ray_job_id="raysubmit_test")
    if zero_segment:
        led.open_segment(rid, cloud=None, nodes=1, hourly_usd_per_node=0.0, started_at=start)
    led.update(rid, rows=200, input_tokens=12_000, output_tokens=28_000,
               metrics={"rows": 200, "input_tokens": 12_000, "output_tokens": 28_000, "output": "/tmp/out"})
    led.finish(rid, "succeeded", ended_at=end)
    return rid
