"""Spot interruption rates estimated from the ledger, for preemption-aware ranking.

Evidence: every `preemption` event the cloud target recorded (cloud, region, instance
type) and the exposure behind it: the node-hours of spot segments on that (cloud,
region, instance type) -- finished segments to their end, open ones to now.

Model: interruptions of one node are a Poisson process with rate lambda per hour. With
a Gamma(alpha, beta) prior on lambda (shape alpha events, rate beta hours), k observed
preemptions over T node-hours give the posterior mean

    lambda = (alpha + k) / (beta + T)        per node-hour

The prior is alpha = 1 event over beta = 50 node-hours: 0.02 interruptions per
node-hour (one per ~50 node-hours). That is a judgement call, not a measurement: GPU
spot pools (A100/H100 especially) are interrupted far more often than the CPU averages
in AWS's Spot Advisor, and an untested zone should not look safer than one with a
clean record. Its weight is small on purpose: 50 node-hours of history weigh as much as
the prior, and the same prior applies to every offer, so without history it does not
change the order (all spot prices scale by the same factor). A cluster of N nodes is
interrupted when any node is, so its rate is N x lambda. That rate feeds the planner's effective price

    effective $/h = price x (1 + rate x (restart_minutes + checkpoint_minutes / 2) / 60)

Default ranking (`rayctl plan`): preemption-aware when the ledger holds any spot
history (spot segments or preemption events), sticker otherwise; `--preemption-aware`
and `--sticker` force either. Reading is read-only: `plan` never creates a ledger.
A ledger that cannot be read is a `LedgerError` naming the file; `plan` then ranks by
sticker price with a warning, or exits 2 when `--preemption-aware` was asked for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

PRIOR_EVENTS = 1.0  # alpha
PRIOR_HOURS = 50.0  # beta (node-hours)


@dataclass
class History:
    events: dict = field(default_factory=dict)  # (cloud, region, instance_type) -> preemptions
    hours: dict = field(default_factory=dict)  # (cloud, region, instance_type) -> spot node-hours

    @property
    def any(self) -> bool:
        return bool(self.events) or bool(self.hours)

    def totals(self) -> tuple[int, float]:
        return int(sum(self.events.values())), float(sum(self.hours.values()))

    def node_rate(self, cloud: str, region: str, instance_type: str) -> float:
        key = (cloud, region, instance_type)
        return (PRIOR_EVENTS + self.events.get(key, 0)) / (PRIOR_HOURS + self.hours.get(key, 0.0))

    def rate_fn(self, nodes: int = 1):
        """`rate_fn(cloud, region, instance_type) -> cluster interruptions/hour` for the planner."""
        def fn(cloud, region, instance_type):
            return nodes * self.node_rate(cloud, region, instance_type)

        return fn

    def describe(self) -> str:
        k, t = self.totals()
        return (f"{k} preemption(s) over {t:,.1f} spot node-hours in the ledger; "
                f"prior Gamma({PRIOR_EVENTS:g} event, {PRIOR_HOURS:g} node-hours) = "
                f"{PRIOR_EVENTS / PRIOR_HOURS:.3f}/node-hour where there is no history")


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def history(ledger_path: str | Path | None = None, now: dt.datetime | None = None) -> History:
    """Preemption evidence from the ledger, read-only (empty when there is no ledger)."""
    from ..ledger import Ledger

    h = History()
    led = Ledger.open_readonly(ledger_path)
    if led is None:
        return h
    now = now or dt.datetime.now(dt.timezone.utc)
    with led:
        for e in led.events(kind="preemption"):
            if e["cloud"] is not None:
                key = (e["cloud"], e["region"], e["instance_type"])
                h.events[key] = h.events.get(key, 0) + 1
        for s in led.segments(spot=True):
            if s["cloud"] is None:
                continue
            try:
                hours = ((_parse(s["ended_at"]) if s["ended_at"] else now) - _parse(s["started_at"])
                         ).total_seconds() / 3600.0
            except (TypeError, ValueError):
                continue
            key = (s["cloud"], s["region"], s["instance_type"])
            h.hours[key] = h.hours.get(key, 0.0) + max(0.0, hours) * (s["nodes"] or 1)
    return h
