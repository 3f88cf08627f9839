"""The `::rayctl::` line protocol: how a job reports back to rayctl (docs/launch.md).

A job prints one line per event, the marker followed by one JSON object::

    ::rayctl:: {"type": "progress", "unit": "rows", "done": 128, "total": 300, "message": "..."}
    ::rayctl:: {"type": "metrics", "rows": 300, "input_tokens": 9120, "output_tokens": 9600}
    ::rayctl:: {"type": "budget", "message": "budget deadline reached; job stopped", "deadline": 1.7e9}

- `progress`: `unit` is one of rows, trials, epochs, steps (missing: steps); `done` a
  number; `total` a number or null; `message` (optional) a string; `output_tokens`
  (optional) a number, the tokens generated so far (the launch screen shows tokens/s).
- `metrics`: any keys. Metrics lines merge: later keys win, so the last value of each
  key is the result. `rows`, `input_tokens`, `output_tokens` fill the ledger columns;
  `best_config`, `best_metric`, `checkpoint`, `output`, `url` are shown in summaries;
  workloads may add others (e.g. `epochs`, `resumed_from`, `error`).
- `budget`: printed by the cloud head runner (`providers/skypilot/head.py`) when the
  run's budget deadline stopped the job.

Lines written by Ray worker processes reach the job log prefixed by Ray (for example
``(RayTrainWorker pid=123) ::rayctl:: {...}``, sometimes with colour codes), so a reader
looks for the marker anywhere in a line. rayctl sets `JOB_ENV` in every job so Ray's
log deduplication never folds protocol lines of different workers together.

This one module is both sides: the emitters (`progress`, `metrics`, `budget`) run in
workloads on the cluster, the parser (`parse_line`, `Report`, `merge_metrics`) in
rayctl (runs/ and the SkyPilot log tracker). NaN, Infinity and overflowing numbers
never get through: the emitters print them as null, the parser reads them as null (a
line printed by someone else's `json.dumps`), so the ledger and every `--json` output
stay strict JSON. Only the standard library is imported here.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field

MARKER = "::rayctl::"
UNITS = ("rows", "trials", "epochs", "steps")
TYPES = ("progress", "metrics", "budget")
# Set in every job's environment by rayctl: Ray's log deduplication never folds protocol lines
# (it folds look-alike lines of different workers into one "[repeated Nx across cluster]" line).
JOB_ENV = {"RAY_DEDUP_LOGS_ALLOW_REGEX": MARKER}
LEDGER_COUNTS = ("rows", "input_tokens", "output_tokens")


# ---------------------------------------------------------------------------- emitting


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


def progress(done: int, total: int | None = None, unit: str = "rows", message: str = "", *,
             output_tokens: int | None = None, stream=None) -> str:
    """Print a progress line; returns the line printed. `output_tokens`: generated so far (optional)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    ev = {"type": "progress", "unit": unit, "done": int(done), "total": None if total is None else int(total),
          "message": str(message)}
    if output_tokens is not None:
        ev["output_tokens"] = int(output_tokens)
    return _emit(ev, stream)


def metrics(*, stream=None, **kv) -> str:
    """Print a metrics line with the given keys; returns the line printed."""
    return _emit({"type": "metrics", **kv}, stream)


def budget(message: str, deadline: float | None = None, *, stream=None) -> str:
    """Print a budget line (the budget deadline stopped the job); returns the line printed."""
    return _emit({"type": "budget", "message": str(message), "deadline": deadline}, stream)


# ---------------------------------------------------------------------------- parsing


def _null(_name):
    return None


def _finite_or_null(text: str):
    v = float(text)
    return v if math.isfinite(v) else None


def is_number(x) -> bool:
    """A JSON number (bool is not one)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def parse_line(line: str) -> dict | None:
    """The protocol event on `line`, or None when the line is ordinary output (or malformed)."""
    i = line.find(MARKER)
    if i < 0:
        return None
    try:
        # NaN, Infinity and overflowing numbers (1e400) read as null: they would make the
        # ledger and every `--json` output that shows metrics non-JSON.
        ev = json.loads(line[i + len(MARKER):].strip(), parse_constant=_null, parse_float=_finite_or_null)
    except ValueError:
        return None
    if not isinstance(ev, dict) or ev.get("type") not in TYPES:
        return None
    if ev["type"] == "progress":
        done, total = ev.get("done"), ev.get("total")
        if not is_number(done) or (total is not None and not is_number(total)):
            return None
        if ev.get("unit", "steps") not in UNITS or not isinstance(ev.get("message", ""), (str, type(None))):
            return None
        if ev.get("output_tokens") is not None and not is_number(ev["output_tokens"]):
            ev.pop("output_tokens")
    return ev


def merge_metrics(lines) -> dict:
    """Merged metrics of an iterable of log lines (later keys win), without the `type` key."""
    r = Report()
    for line in lines:
        r.feed(line)
    return r.metrics


@dataclass
class Report:
    """What a job has reported so far: the merged metrics, the latest progress per unit,
    and whether a budget line said the budget stopped it."""

    metrics: dict = field(default_factory=dict)
    progress: dict = field(default_factory=dict)  # unit -> last progress event
    last_progress: dict | None = None
    budget_stop: bool = False

    def feed(self, line: str) -> dict | None:
        """Take one log line; returns its event, or None for ordinary output."""
        ev = parse_line(line)
        if ev is None:
            return None
        if ev["type"] == "metrics":
            self.metrics.update({k: v for k, v in ev.items() if k != "type"})
        elif ev["type"] == "progress":
            self.progress[str(ev.get("unit", "steps"))] = ev
            self.last_progress = ev
        else:
            self.budget_stop = True
        return ev

    def ledger_fields(self) -> dict:
        """Ledger columns for what was reported: the counts, and all metrics as JSON."""
        out: dict = {}
        for k in LEDGER_COUNTS:
            v = self.metrics.get(k)
            if is_number(v):
                out[k] = int(v)
        if self.metrics:
            out["metrics"] = dict(self.metrics)
        return out
