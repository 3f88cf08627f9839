"""The stall watchdog of the built-in `batch-infer` workload: progress lines while the
pipeline runs, a clear failure when no row completes for `stall_timeout_s`, and the one-line
cause of a failed pipeline."""

from __future__ import annotations

import threading
import time

from .. import protocol
from . import common


def root_cause(e: BaseException) -> tuple[BaseException | None, str]:
    """(the WorkloadError inside a Ray task error, if any; a one-line description of the cause)."""
    import re

    seen, cur = set(), e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, common.WorkloadError):
            return cur, str(cur)
        cur = getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = re.search(r"WorkloadError: (.+)", text)
    if m:
        return common.WorkloadError(m.group(1).strip()), m.group(1).strip()
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return None, (lines[-1] if lines else type(e).__name__)[:500]


def watch(worker: threading.Thread, counter, total, stall_timeout_s: float) -> None:
    """Report progress while the pipeline runs; fail if no row completes for stall_timeout_s."""
    import ray

    last_rows, last_change = -1, time.monotonic()
    while worker.is_alive():
        worker.join(timeout=2.0)
        if counter is None:
            continue
        try:
            got = ray.get(counter.get.remote(), timeout=10)
            rows, tokens = got["rows"], got.get("output_tokens")
        except Exception:
            rows = last_rows  # the counter did not answer: no progress seen, the stall clock runs on
        if rows != last_rows:
            if rows > 0:
                protocol.progress(rows, total, "rows", "generating", output_tokens=tokens)
            last_rows, last_change = rows, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout_s:
            free = ray.available_resources()
            raise common.WorkloadError(
                f"stalled: no progress for {stall_timeout_s:.0f} s (no row completed; free now: "
                f"{free.get('CPU', 0):g} CPU, "
                f"{free.get('GPU', 0):g} GPU); other work may hold the CPUs Ray Data's read tasks or model replicas "
                "need; lower concurrency/num_cpus or raise workload.stall_timeout_s")
