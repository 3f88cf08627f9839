"""Turn what SkyPilot reports about a run into ledger rows: segments, events, metrics.

- `Tracker` follows one run's cluster: where it landed (-> a `failover` event naming the
  candidates SkyPilot skipped, a `provisioned` event and a billing segment at that
  candidate's $/h), each spot preemption (-> a `preemption` event at the old place, the
  segment closed) and each recovery (-> a `recovery` event and a new segment where it
  came back). The preemption-aware planner reads these events back (`rayctl.planning.preemption`).
- `LogSink` is the stream SkyPilot writes job logs into: every line is redacted, kept in
  the run's log file, echoed unless quiet, and `::rayctl:: {...}` lines are read with
  `rayctl.protocol` (the workload's progress and metrics, the head runner's budget stop).
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import threading

from ... import protocol
from ...redact import redact
from .sdk import Location, ManagedRecord

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SKY_CONTROL = re.compile(r"<sky-payload[^>]*>.*?</sky-payload>")  # SkyPilot's spinner control messages


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LogSink:
    """A text stream for SkyPilot's `output_stream=`; thread-safe."""

    def __init__(self, path, echo: bool = True, out=None, secrets: tuple[str, ...] = ()):
        self.secrets = tuple(secrets)  # the run's workload.env secret values, masked in every line
        self._fh = open(path, "a", encoding="utf-8") if path else None
        self.echo = echo
        self.out = out or sys.stdout
        self._buf = ""
        self._lock = threading.Lock()
        self.report = protocol.Report()
        self.lines = 0

    @property
    def metrics(self) -> dict:
        """The merged metrics seen so far."""
        return self.report.metrics

    @property
    def progress(self) -> dict | None:
        """The latest progress event seen, of any unit."""
        return self.report.last_progress

    @property
    def budget_stop(self) -> bool:
        """A budget line said the head runner stopped the job at its budget deadline."""
        return self.report.budget_stop

    # io.TextIOBase-ish surface
    def write(self, s) -> int:
        if not isinstance(s, str):
            s = s.decode("utf-8", "replace")
        with self._lock:
            self._buf += s
            while "\n" in self._buf:
                line, self._buf = self._buf.split("\n", 1)
                self._line(line)
        return len(s)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def flush(self) -> None:
        with self._lock:
            if self._fh:
                self._fh.flush()
            try:
                self.out.flush()
            except Exception:
                pass

    def close(self) -> None:
        with self._lock:
            if self._buf:
                self._line(self._buf)
                self._buf = ""
            if self._fh:
                self._fh.close()
                self._fh = None

    def _line(self, raw: str) -> None:
        stripped = _SKY_CONTROL.sub("", raw)
        if stripped != raw and not stripped.strip():
            return  # a spinner update, not a log line
        line = redact(_ANSI.sub("", stripped.rstrip("\r")), extra=self.secrets)
        self.lines += 1
        if self._fh:
            self._fh.write(line + "\n")
        if self.echo:
            try:
                self.out.write(line + "\n")
            except Exception:
                pass
        self.report.feed(line)

    def ledger_fields(self) -> dict:
        """Ledger columns from the metrics seen so far."""
        with self._lock:
            return self.report.ledger_fields()


def _label(c) -> str:
    return c.label if c is not None else "unknown offer"


class Tracker:
    """Ledger bookkeeping for one cloud run."""

    def __init__(self, ledger, run_id: str, candidates: list, nodes: int, clock, zone_ids: dict | None = None):
        self.ledger = ledger
        self.run_id = run_id
        self.candidates = list(candidates)
        self.nodes = nodes
        self.clock = clock
        self.zone_ids = zone_ids or {}  # AWS zone name -> zone ID (the catalog's spelling)
        self.current = None  # (Location, Candidate | None)
        self.recoveries = 0
        self.preempted_pending = False  # a preemption recorded, recovery not yet seen
        self.landed = False

    # ------------------------------------------------------------- matching
    def locate(self, loc: Location):
        """The plan candidate SkyPilot's placement corresponds to (best effort), or None."""
        zone = self.zone_ids.get(loc.zone, loc.zone) if loc.zone else None
        text = loc.resources or ""
        spot = loc.spot if loc.spot is not None else ("[Spot]" in text or "spot" in text.lower())

        def itype_ok(c):
            return (loc.instance_type == c.instance_type) if loc.instance_type else (c.instance_type in text)

        pools = [
            lambda c: c.cloud == loc.cloud and c.region == loc.region and (c.zone == zone or not zone)
            and itype_ok(c) and c.spot == spot,
            lambda c: c.cloud == loc.cloud and c.region == loc.region and itype_ok(c) and c.spot == spot,
            lambda c: c.cloud == loc.cloud and itype_ok(c) and c.spot == spot,
            lambda c: c.cloud == loc.cloud and itype_ok(c),
        ]
        for ok in pools:
            for c in self.candidates:
                if ok(c):
                    return c
        return None

    def _where(self, loc: Location, cand) -> dict:
        zone = self.zone_ids.get(loc.zone, loc.zone) if loc.zone else None
        if cand is not None and cand.region == loc.region and cand.zone:
            zone = cand.zone
        return {"cloud": loc.cloud, "region": loc.region, "zone": zone,
                "instance_type": cand.instance_type if cand is not None else loc.instance_type}

    def restore(self) -> None:
        """Rebuild the state from the ledger (for a run rayctl was not attached to)."""
        evs = [e for e in self.ledger.events(self.run_id) if e["kind"] in ("provisioned", "preemption", "recovery")]
        self.landed = any(e["kind"] == "provisioned" for e in evs)
        self.recoveries = sum(1 for e in evs if e["kind"] == "recovery")
        self.preempted_pending = bool(evs) and evs[-1]["kind"] == "preemption"
        segs = self.ledger.segments(self.run_id)
        if segs:
            s = segs[-1]
            where = {k: s[k] for k in ("cloud", "region", "zone", "instance_type")}
            cand = next((c for c in self.candidates if c.cloud == s["cloud"] and c.region == s["region"]
                         and c.instance_type == s["instance_type"] and (c.zone == s["zone"] or not c.zone)), None)
            self.current = (where, cand)

    # ------------------------------------------------------------- transitions
    def running_at(self, loc: Location) -> None:
        cand = self.locate(loc)
        now = iso(self.clock())
        where = self._where(loc, cand)
        if not self.landed:
            self.landed = True
            idx = next((i for i, c in enumerate(self.candidates) if c is cand), None)
            if idx:
                skipped = [_label(c) for c in self.candidates[:idx]]
                self.ledger.add_event(self.run_id, "failover", at=now,
                                      detail={"skipped": skipped, "landed": _label(cand),
                                              "why": "SkyPilot tried these first (no capacity or quota)"},
                                      **where)
            self.ledger.add_event(self.run_id, "provisioned", at=now, detail={"offer": _label(cand),
                                                                               "skypilot": redact(loc.resources)},
                                  **where)
        elif self.preempted_pending or self.current is None or self.current[0] != where:
            self.ledger.add_event(self.run_id, "recovery", at=now,
                                  detail={"offer": _label(cand), "recovery": self.recoveries,
                                          "from": _label(self.current[1]) if self.current else None}, **where)
        else:
            return  # still where it was
        self.preempted_pending = False
        self.current = (where, cand)
        per_node = cand.hourly_usd_per_node if cand is not None else 0.0
        spot = bool(cand.spot if cand is not None else loc.spot)
        self.ledger.open_segment(self.run_id, cloud=where["cloud"], region=where["region"], zone=where["zone"],
                                 instance_type=where["instance_type"], spot=spot,
                                 nodes=self.nodes, hourly_usd_per_node=per_node, started_at=now)
        fields = {"status": "running", **where, "spot": spot, "hourly_usd": round(per_node * self.nodes, 6)}
        if cand is not None:
            fields.update(accelerator=cand.accelerator, accelerator_count=cand.accelerator_count)
        self.ledger.update(self.run_id, **fields)

    def preempted(self, detail: str | None = None) -> None:
        if self.current is None or self.preempted_pending:
            return
        where, cand = self.current
        now = iso(self.clock())
        self.ledger.add_event(self.run_id, "preemption", at=now,
                              detail={"offer": _label(cand), "detail": redact(detail) if detail else None},
                              **where)
        self.ledger.close_segment(self.run_id, ended_at=now)
        self.preempted_pending = True

    def observe(self, rec: ManagedRecord) -> None:
        """Apply one managed-job record (from a poll)."""
        if rec.recovery_count > self.recoveries:
            # One or more recoveries happened since the last poll; a RECOVERING state we missed
            # still means the old cluster was lost.
            self.preempted(rec.failure_reason)
            self.recoveries = rec.recovery_count
            if rec.status == "RUNNING" and rec.location is not None:
                self.preempted_pending = True
        if rec.status == "RECOVERING":
            self.preempted(rec.failure_reason)
        elif rec.status == "RUNNING" and rec.location is not None:
            self.running_at(rec.location)
