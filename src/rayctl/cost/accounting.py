"""What each recorded run cost, from the ledger's billed segments.

A run's cluster is billed in segments: one per incarnation (a spot recovery opens a
new segment, possibly on another offer at another price). For each segment

    node_hours = nodes x (ended_at - started_at) / 3600     (an open segment ends now)
    cost_usd   = node_hours x hourly_usd_per_node

and the run's cost is the sum over its segments, split by pricing mode (spot /
on-demand; a $0/h segment is 'local' on the local target, else 'unpriced', and is not
counted in billed node-hours). Billing is per second with no minimum, the same arithmetic as
`Ledger.cost_of`. A run with no segments but a cluster price (`runs.hourly_usd`) is
costed as hourly_usd x its duration; a local run costs $0.

Tokens are the workload's reported `input_tokens + output_tokens`; tokens per dollar
= tokens / cost_usd (undefined for a run that cost $0, e.g. on the local target:
`rayctl cost compare --run RUN` prices such a run's measured throughput at cloud
offers instead).
"""

from __future__ import annotations

import datetime as dt
import re

from ..errors import InputError
from ..ledger import Ledger, now, parse_time
from . import clean

_REL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.I)
_UNIT_S = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LEDGER_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

def parse_since(text: str, *, flag: str = "--since", today: dt.datetime | None = None) -> dt.datetime:
    """A UTC datetime from YYYY-MM-DD, an ISO 8601 time, or an age like 7d / 12h / 30m / 2w."""
    s = (text or "").strip()
    ref = today or dt.datetime.now(dt.timezone.utc)
    m = _REL.match(s)
    if m:
        try:
            return ref - dt.timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2).lower()])
        except (OverflowError, ValueError):
            raise InputError(f"{flag} '{text}': that age reaches before year 1; use a smaller age "
                             "such as 7d, 12h, 30m, 2w, or a date") from None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            d = dt.datetime.combine(dt.date.fromisoformat(s), dt.time(), dt.timezone.utc)
        else:
            d = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(f"{flag} '{text}' is not a date: use YYYY-MM-DD (2025-01-31), an ISO 8601 time "
                         "(2025-01-31T08:00:00Z; no zone means UTC) or an age such as 7d, 12h, 30m, 2w") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    try:
        return d.astimezone(dt.timezone.utc)
    except OverflowError:
        raise InputError(f"{flag} '{text}': that time reaches before year 1 in UTC; use a later date") from None


def _mode(spot) -> str:
    return "spot" if spot else "on-demand"


def segment_cost(seg: dict, at: dt.datetime, target: str = "cloud") -> dict:
    """One billed segment: hours, node-hours and $ (an open segment is billed up to `at`).

    A segment at $0/h is not billed: its mode is 'local' on the local target, else 'unpriced'
    (e.g. an existing cluster whose price rayctl does not know)."""
    start = parse_time(seg["started_at"])
    end = parse_time(seg["ended_at"]) if seg.get("ended_at") else at
    hours = max(0.0, (end - start).total_seconds() / 3600.0)
    nodes = int(seg.get("nodes") or 1)
    per_node = float(seg.get("hourly_usd_per_node") or 0.0)
    return {
        "started_at": seg["started_at"], "ended_at": seg.get("ended_at"), "open": not seg.get("ended_at"),
        "cloud": seg.get("cloud"), "region": seg.get("region"), "zone": seg.get("zone"),
        "instance_type": seg.get("instance_type"),
        "mode": _mode(seg.get("spot")) if per_node > 0 else ("local" if target == "local" else "unpriced"),
        "nodes": nodes,
        "hourly_usd_per_node": per_node, "hours": hours, "node_hours": nodes * hours,
        "cost_usd": nodes * hours * per_node,
    }


def run_cost(ledger: Ledger, run: dict, at: str | None = None) -> dict:
    """Per-run accounting: segments, node-hours and $ by pricing mode, recoveries, tokens per $."""
    at_dt = parse_time(at or now())
    segs = [segment_cost(s, at_dt, run["target"]) for s in ledger.segments(run["id"])]
    by_mode: dict = {}
    if segs:
        basis = "segments"
        for s in segs:
            m = by_mode.setdefault(s["mode"], {"node_hours": 0.0, "cost_usd": 0.0})
            m["node_hours"] += s["node_hours"]
            m["cost_usd"] += s["cost_usd"]
        cost = sum(s["cost_usd"] for s in segs)
        node_hours = sum(s["node_hours"] for s in segs if s["hourly_usd_per_node"] > 0)
    else:
        hourly = float(run.get("hourly_usd") or 0.0)
        hours = _run_hours(run, at_dt)
        nodes = int(run.get("nodes") or 1)
        basis = "run" if hourly > 0 else "none"
        cost = hourly * hours
        node_hours = nodes * hours if hourly > 0 else 0.0
        if hourly > 0:
            by_mode[_mode(run.get("spot"))] = {"node_hours": node_hours, "cost_usd": cost}
    api = (run.get("metrics") or {}).get("api_cost_usd")  # a batch-infer run against a managed API
    api = float(api) if isinstance(api, (int, float)) and not isinstance(api, bool) else None
    cost += api or 0.0
    tin, tout = run.get("input_tokens"), run.get("output_tokens")
    tokens = None if tin is None and tout is None else int(tin or 0) + int(tout or 0)
    last = segs[-1] if segs else {}
    return {
        "id": run["id"], "recipe": run["recipe"], "kind": run["kind"], "target": run["target"],
        "status": run["status"], "started_at": run["started_at"], "ended_at": run.get("ended_at"),
        "duration_s": run.get("duration_s"),
        "cloud": run.get("cloud") or last.get("cloud"), "region": run.get("region") or last.get("region"),
        "instance_type": run.get("instance_type") or last.get("instance_type"),
        "accelerator": run.get("accelerator"), "accelerator_count": run.get("accelerator_count"),
        "nodes": run.get("nodes"),
        "cost_basis": basis, "segments": segs, "recoveries": max(0, len(segs) - 1),
        "billed_node_hours": node_hours, "by_mode": by_mode, "cost_usd": cost, "api_cost_usd": api,
        "recorded_cost_usd": run.get("cost_usd"),
        "rows": run.get("rows"), "input_tokens": tin, "output_tokens": tout, "tokens": tokens,
        "tokens_per_usd": tokens / cost if tokens and cost > 0 else None,
        "usd_per_1m_tokens": cost / tokens * 1e6 if tokens else None,
    }


def _run_hours(run: dict, at: dt.datetime) -> float:
    if run.get("duration_s") is not None:
        return max(0.0, float(run["duration_s"]) / 3600.0)
    end = parse_time(run["ended_at"]) if run.get("ended_at") else at
    return max(0.0, (end - parse_time(run["started_at"])).total_seconds() / 3600.0)


def report(ledger: Ledger, *, since: dt.datetime | None = None, recipe: str | None = None,
           at: str | None = None) -> dict:
    """Every matching run with its accounting, newest first, and the totals."""
    # A string bound (the ledger stores ISO text); exact check below. Years before 1000 are not
    # zero-padded by strftime, so they would compare after every real date: clamp to 1970.
    coarse = max(since, _EPOCH).strftime(_LEDGER_FMT)[:19] if since else None
    runs = []
    for r in ledger.runs(since=coarse, recipe=recipe):
        if since and parse_time(r["started_at"]) < since:
            continue
        runs.append(run_cost(ledger, r, at=at))
    return clean({"ledger": str(ledger.path),
                  "filters": {"since": f"{since.year:04d}" + since.strftime("-%m-%dT%H:%M:%SZ") if since else None,
                              "recipe": recipe},
                  "runs": runs, "totals": totals(runs)})


def totals(runs: list[dict]) -> dict:
    by_mode: dict = {}
    by_status: dict = {}
    for r in runs:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        for mode, v in r["by_mode"].items():
            m = by_mode.setdefault(mode, {"node_hours": 0.0, "cost_usd": 0.0})
            m["node_hours"] += v["node_hours"]
            m["cost_usd"] += v["cost_usd"]
    cost = sum(r["cost_usd"] for r in runs)
    priced = [r for r in runs if r["cost_usd"] > 0 and r["tokens"]]
    priced_cost = sum(r["cost_usd"] for r in priced)
    priced_tokens = sum(r["tokens"] for r in priced)

    def total(key):
        vals = [r[key] for r in runs if r[key] is not None]
        return sum(vals) if vals else None

    return {
        "runs": len(runs), "by_status": by_status, "cost_usd": cost,
        "billed_node_hours": sum(r["billed_node_hours"] for r in runs), "by_mode": by_mode,
        "recoveries": sum(r["recoveries"] for r in runs),
        "rows": total("rows"), "input_tokens": total("input_tokens"), "output_tokens": total("output_tokens"),
        "tokens": total("tokens"),
        # over the runs that had both a cost and tokens (local runs cost $0 and are left out)
        "tokens_per_usd": priced_tokens / priced_cost if priced_cost > 0 else None,
    }
