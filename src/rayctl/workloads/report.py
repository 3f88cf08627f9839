"""How a job reports back to rayctl: structured lines on stdout (contract 2).

A workload prints one line per event, the marker followed by one JSON object::

    ::rayctl:: {"type": "progress", "unit": "rows", "done": 128, "total": 300, "message": "..."}
    ::rayctl:: {"type": "metrics", "rows": 300, "input_tokens": 9120, "output_tokens": 9600}

`unit` is one of rows, trials, epochs, steps; `total` may be null. Metrics lines merge:
later keys win, so the last value of each key is the result. Known metrics keys are
`rows`, `input_tokens`, `output_tokens`, `best_config`, `best_metric`, `checkpoint`,
`output`, `url`; workloads may add others (e.g. `epochs`, `resumed_from`).

Lines written by Ray worker processes reach the job log prefixed by Ray (for example
``(RayTrainWorker pid=123) ::rayctl:: {...}``, sometimes with colour codes), so a reader
looks for the marker anywhere in a line: use `parse_line`. Jobs that emit from workers
set ``RAY_DEDUP_LOGS=0`` so Ray does not fold similar lines together.

Only the standard library is imported here.
"""

from __future__ import annotations

import json
import math
import sys

MARKER = "::rayctl::"
UNITS = ("rows", "trials", "epochs", "steps")


def _clean(value):
    """JSON-safe copy: NaN/inf become null, unknown objects their str()."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    try:  # numpy scalars and friends
        return _clean(value.item())
    except Exception:
        return str(value)


def _emit(obj: dict, stream=None) -> str:
    line = f"{MARKER} {json.dumps(_clean(obj), separators=(',', ':'), allow_nan=False)}"
    out = stream or sys.stdout
    out.write(line + "\n")
    out.flush()
    return line


def progress(done: int, total: int | None = None, unit: str = "rows", message: str = "", *, stream=None) -> str:
    """Print a progress line; returns the line printed."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    return _emit({"type": "progress", "unit": unit, "done": int(done),
                  "total": None if total is None else int(total), "message": str(message)}, stream)


def metrics(*, stream=None, **kv) -> str:
    """Print a metrics line with the given keys; returns the line printed."""
    return _emit({"type": "metrics", **kv}, stream)


def parse_line(line: str) -> dict | None:
    """The event a log line carries, or None when it carries none (or is malformed)."""
    i = line.find(MARKER)
    if i < 0:
        return None
    text = line[i + len(MARKER):].strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("type") not in ("progress", "metrics"):
        return None
    return obj


def merge_metrics(lines) -> dict:
    """Merged metrics of an iterable of log lines (later keys win), without the `type` key."""
    out: dict = {}
    for line in lines:
        ev = parse_line(line)
        if ev and ev["type"] == "metrics":
            out.update({k: v for k, v in ev.items() if k != "type"})
    return out
