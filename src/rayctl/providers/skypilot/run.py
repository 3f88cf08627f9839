"""One cloud run's cluster, driven through SkyPilot: launch, poll, track, budget, teardown.

`_Run` is used by `rayctl.providers.skypilot.provider` (the entry points) both for a launch rayctl is
attached to and, rebuilt from the cluster registry, for `status` / `stop` / `down` later.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from ...errors import JobFailed, RayctlError
from ...ledger import FINAL
from ...recipe import secret_values as recipe_secrets
from ...redact import redact
from . import registry as registry
from .sdk import CLUSTER_JOB_TERMINAL, MANAGED_TERMINAL, SkyClient
from .track import LogSink, Tracker, iso

POLL_S = float(os.environ.get("RAYCTL_CLOUD_POLL_S") or 20)
CANCEL_WAIT_S = 600.0


class BudgetExceeded(JobFailed):
    """The run was stopped (and torn down) because it would pass its budget."""


class _Stop(Exception):
    def __init__(self, status: str, reason: str, exc: RayctlError):
        self.status, self.reason, self.exc = status, reason, exc


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        sys.stderr.write(f"rayctl: {msg}\n")
        sys.stderr.flush()


def _loud(msg: str) -> None:
    bar = "!" * 78
    sys.stderr.write(f"{bar}\nrayctl: ERROR: {msg}\n{bar}\n")
    sys.stderr.flush()


def _log_path(ledger, run_id: str) -> Path:
    row = ledger.get(run_id)
    if row.get("log_path"):
        return Path(row["log_path"])
    from ...settings import rayctl_home

    p = rayctl_home() / "logs" / f"{run_id}.log"
    p.parent.mkdir(parents=True, exist_ok=True)
    ledger.update(run_id, log_path=str(p))
    return p


def _provider_error(e: BaseException, n: int) -> str:
    kind = type(e).__name__
    msg = redact(str(e)).strip().splitlines()
    first = msg[0] if msg else ""
    if kind == "ResourcesUnavailableError":
        hist = getattr(e, "failover_history", None) or []
        return (f"no capacity on any of the {n} candidate offer(s) ({len(hist)} failover attempt(s)): "
                f"{first[:300]}")
    return f"{kind}: {first[:400]}"


class _Cand:
    """A plan candidate rebuilt from the registry (for runs rayctl is not attached to)."""

    def __init__(self, d: dict):
        self.__dict__.update(d)
        self.label = d.get("label") or f"{d.get('cloud')}/{d.get('region')} {d.get('instance_type')}"


class _Run:
    """One cloud run's cluster: launch, poll, track, enforce the budget, tear down."""

    def __init__(self, ledger, run_id, client: SkyClient, name, mode, candidates, nodes, sink, zone_ids, clock,
                 sleep, poll_s, quiet, *, budget=None, start=None, job_id=None):
        self.ledger, self.run_id, self.client, self.name, self.mode = ledger, run_id, client, name, mode
        self.sink, self.clock, self.sleep, self.poll_s, self.quiet = sink, clock, sleep, poll_s, quiet
        self.budget = budget
        self.start = start if start is not None else clock()
        self.job_id = job_id
        self.request = None
        self.tracker = Tracker(ledger, run_id, candidates, nodes, clock, zone_ids)

    @classmethod
    def from_registry(cls, ledger, row: dict, client: SkyClient, *, clock=time.time, sleep=time.sleep,
                      quiet=True, sink=None):
        import json

        cands = [_Cand(d) for d in json.loads(row.get("candidates") or "[]")]
        zmap = {}
        det = row.get("detail") or ""
        if det.startswith("zone_names="):
            try:
                zmap = json.loads(det[len("zone_names="):])
            except ValueError:
                zmap = {}
        run = ledger.get(row["run_id"]) if row.get("run_id") else None
        budget = None
        if run is not None and run["status"] not in FINAL:  # a finished run has no budget left to police
            budget = _budget_of(ledger, run)
        r = cls(ledger, row["run_id"], client, row["name"], row["mode"], cands, row.get("nodes") or 1,
                sink or LogSink(None, echo=False, secrets=recipe_secrets((run or {}).get("recipe_path"))),
                {v: k for k, v in zmap.items()}, clock, sleep, POLL_S, quiet,
                budget=budget, start=_epoch(run["started_at"]) if run else None, job_id=row.get("job_id"))
        r.tracker.restore()
        return r

    # ------------------------------------------------------------- managed jobs
    def managed(self, task, detach: bool) -> dict:
        self.job_id = self.client.launch_managed(task, self.name, output_stream=self.sink,
                                                 on_request=self._on_request)
        self.request = None
        registry.update(self.ledger, self.name, job_id=self.job_id)
        self._event("submitted", detail={"managed_job_id": self.job_id})
        if detach:
            _say(f"detached: managed job {self.job_id} ({self.name}); follow with `rayctl logs {self.run_id}`, "
                 f"stop with `rayctl stop {self.run_id}`", self.quiet)
            return self.ledger.get(self.run_id)
        self._follow_logs(lambda: self.client.managed_logs(self.job_id, True, self.sink))
        missing = 0
        while True:
            rec = self.client.managed_record(self.job_id)
            if rec is None:
                missing += 1
                if missing > 3:
                    raise RuntimeError(f"managed job {self.job_id} is no longer listed by SkyPilot")
            else:
                missing = 0
                self.tracker.observe(rec)
                if rec.status == "RUNNING":
                    registry.update(self.ledger, self.name, state="up", **self._where())
                self._metrics()
                if rec.status in MANAGED_TERMINAL:
                    return self._managed_done(rec)
            self.check_budget()
            self.sleep(self.poll_s)

    def _managed_done(self, rec) -> dict:
        self._join_logs()
        fields = self.sink.ledger_fields()
        # SkyPilot's jobs controller releases the job's cluster when the job ends, whatever the outcome.
        registry.update(self.ledger, self.name, state="down", detail=f"managed job {rec.status.lower()}")
        self._event("teardown", detail={"why": f"managed job {rec.status.lower()}; "
                                                               "SkyPilot's controller released the cluster"})
        end = iso(self.clock())
        if rec.status == "SUCCEEDED":
            return self.ledger.finish(self.run_id, "succeeded", None, ended_at=end, **fields)
        if self.sink.budget_stop:
            why = "budget deadline reached on the head node; job stopped, cluster released"
            self._event("budget_stop", detail={"by": "head deadline"})
            self.ledger.finish(self.run_id, "stopped", why, ended_at=end, **fields)
            raise BudgetExceeded(f"{self.name}: {why}")
        if rec.status == "CANCELLED":
            why = "the managed job was cancelled outside rayctl"
            self.ledger.finish(self.run_id, "stopped", why, ended_at=end, **fields)
            raise JobFailed(f"{self.name}: {why}")
        nodes = self._nodes_error()
        why = f"{rec.status}: " + (nodes or redact(rec.failure_reason or 'see rayctl logs ' + self.run_id,
                                                   extra=self.sink.secrets))
        self._event("job_failed", detail={"status": rec.status, **({"error": nodes} if nodes else {})})
        self.ledger.finish(self.run_id, "failed", why, ended_at=end, **fields)
        raise JobFailed(f"{self.name}: job {why} (cluster released by SkyPilot)")

    def _nodes_error(self) -> str | None:
        """The head runner's message when not every node joined the Ray cluster (it submitted nothing)."""
        m = self.sink.metrics
        return str(m["error"]) if m.get("nodes_wanted") and m.get("error") else None

    # ------------------------------------------------------------- clusters
    def cluster(self, task, detach: bool, *, kind: str, teardown_after: str, autostop) -> dict:
        job_id, handle = self.client.launch_cluster(task, self.name, idle_minutes=autostop,
                                                    down=autostop is not None, output_stream=self.sink,
                                                    on_request=self._on_request)
        self.request = None
        self.job_id = job_id
        loc = SkyClient.handle_location(handle)
        if loc is not None:
            self.tracker.running_at(loc)
        registry.update(self.ledger, self.name, job_id=job_id, state="up", **self._where())
        if detach:
            return self.ledger.get(self.run_id)
        self._follow_logs(lambda: self.client.cluster_logs(self.name, job_id, True, self.sink))
        while True:
            try:
                st = self.client.cluster_job_status(self.name, job_id)
            except Exception as e:
                if type(e).__name__ in ("ClusterNotUpError", "ClusterDoesNotExist"):
                    self.tracker.preempted(f"cluster lost: {type(e).__name__}")
                    raise _Stop("failed", "the cluster was lost (spot preemption?); runs that keep their "
                                "cluster are not recovered (use teardown.after: job for managed recovery)",
                                JobFailed(f"{self.name}: the cluster was lost")) from None
                raise
            self._metrics()
            if st in CLUSTER_JOB_TERMINAL:
                break
            self.check_budget()
            self.sleep(self.poll_s)
        self._join_logs()
        fields = self.sink.ledger_fields()
        if st != "SUCCEEDED":
            if self.sink.budget_stop:
                self._event("budget_stop", detail={"by": "head deadline"})
                raise _Stop("stopped", "budget deadline reached on the head node; job stopped",
                            BudgetExceeded(f"{self.name}: budget deadline reached; job stopped"))
            nodes = self._nodes_error()
            self._event("job_failed", detail={"status": st, **({"error": nodes} if nodes else {})})
            raise _Stop("failed", f"job {st}" + (f": {nodes}" if nodes else ""),
                        JobFailed(f"{self.name}: job {st}" + (f": {nodes}" if nodes else "")
                                  + f"; see `rayctl logs {self.run_id}`"))
        if kind == "serve":
            from .task import SERVE_PORT

            ep = self.client.endpoint(self.name, SERVE_PORT)
            url = f"http://{ep}" if ep and "://" not in ep else ep
            metrics = dict(fields.get("metrics") or {})
            if url:
                metrics["url"] = url
            self.ledger.update(self.run_id, status="serving", metrics=metrics,
                               **{k: v for k, v in fields.items() if k != "metrics"})
            _say(f"serving at {url or '(endpoint unknown; see `sky status --endpoints ' + self.name + '`)'}; "
                 f"stop with `rayctl stop {self.run_id}`", self.quiet)
            return self.ledger.get(self.run_id)
        end = iso(self.clock())
        kept = "kept: " + (f"autodown after {autostop} idle minutes" if autostop
                           else f"delete it with `rayctl down {self.name}` (or `rayctl down --all`)")
        self._event("cluster_kept", detail={"why": f"teardown.after: {teardown_after}",
                                                                   "autodown_minutes": autostop})
        _say(f"job succeeded; cluster {self.name} {kept}", self.quiet)
        return self.ledger.finish(self.run_id, "succeeded", f"cluster {kept}", ended_at=end, **fields)

    # ------------------------------------------------------------- shared
    def _event(self, kind: str, **kw) -> None:
        self.ledger.add_event(self.run_id, kind, at=iso(self.clock()), **kw)

    def _on_request(self, req) -> None:
        self.request = req

    def _where(self) -> dict:
        cur = self.tracker.current
        if cur is None:
            return {}
        where, cand = cur
        return {**where, "spot": int(bool(cand.spot)) if cand is not None else None}

    def _metrics(self) -> None:
        f = self.sink.ledger_fields()
        if f and f != getattr(self, "_last_metrics", None):
            self._last_metrics = f
            self.ledger.update(self.run_id, **f)

    def _follow_logs(self, fn) -> None:
        def _run():
            try:
                fn()
            except Exception as e:  # logs are best effort; status comes from polling
                self.sink.write(f"rayctl: log stream ended: {type(e).__name__}: {redact(str(e))[:200]}\n")

        self._log_thread = threading.Thread(target=_run, name="rayctl-cloud-logs", daemon=True)
        self._log_thread.start()

    def _join_logs(self, timeout: float = 30.0) -> None:
        t = getattr(self, "_log_thread", None)
        if t is not None:
            t.join(timeout)

    def check_budget(self) -> None:
        b = self.budget
        if b is None or (not b.max_usd and not b.max_hours):
            return
        now = self.clock()
        step_h = self.poll_s / 3600.0
        if b.max_usd:
            cost = self.ledger.cost_of(self.run_id, at=iso(now))
            rate = self.ledger.get(self.run_id).get("hourly_usd") or 0.0
            if self.tracker.current is None or self.tracker.preempted_pending:
                rate = 0.0  # nothing billing right now
            if cost + rate * step_h >= b.max_usd - 1e-9:
                why = (f"budget: ${cost:,.2f} spent at ${rate:,.4f}/h; the next {self.poll_s:g} s would pass "
                       f"budget.max_usd ${b.max_usd:,.2f}")
                self._event("budget_stop", detail={"cost_usd": round(cost, 6),
                                                                          "max_usd": b.max_usd})
                raise _Stop("stopped", why, BudgetExceeded(f"{self.name}: stopped: {why}"))
        if b.max_hours:
            hours = (now - self.start) / 3600.0
            if hours + step_h >= b.max_hours - 1e-9:
                why = (f"budget: running {hours:.2f} h; the next {self.poll_s:g} s would pass "
                       f"budget.max_hours {b.max_hours:g} h")
                self._event("budget_stop", detail={"hours": round(hours, 4),
                                                                          "max_hours": b.max_hours})
                raise _Stop("stopped", why, BudgetExceeded(f"{self.name}: stopped: {why}"))

    def teardown(self, why: str) -> str:
        """Tear down this run's cluster; '' when done, else a loud note (also recorded)."""
        old = None
        if threading.current_thread() is threading.main_thread():
            try:
                old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leak the cluster
            except ValueError:
                old = None
        _say(f"tearing down {self.name} ({why}); please wait", self.quiet)
        try:
            if self.request is not None:
                try:
                    self.client.cancel_request(self.request)
                except Exception as e:  # the teardown below still runs; say why the request lives on
                    err = f"{type(e).__name__}: {redact(str(e)).strip()[:200]}"
                    _say(f"warning: could not cancel SkyPilot request {self.request} ({err}); "
                         "tearing down the cluster anyway", self.quiet)
                    self._event("cancel_request_failed", detail={"request": str(self.request), "error": err})
            if self.mode == "managed":
                ids = [self.job_id] if self.job_id is not None else self.client.managed_by_name(self.name)
                for jid in ids:
                    self.client.cancel_managed(job_id=jid)
                for jid in ids:
                    self._wait_cancelled(jid)
            else:
                self.client.down(self.name)
        except Exception as e:
            err = f"{type(e).__name__}: {redact(str(e)).strip()[:300]}"
            how = (f"`sky jobs cancel {self.job_id}`" if self.mode == "managed" and self.job_id is not None
                   else f"`sky jobs cancel -n {self.name}`" if self.mode == "managed" else f"`sky down {self.name}`")
            msg = (f"could not tear down cloud cluster '{self.name}' after: {why}. Error: {err}. "
                   f"It may still be running and billing. Delete it now with {how} "
                   f"(or retry with `rayctl down --all`), and check `sky status` / `sky jobs queue`.")
            _loud(msg)
            registry.update(self.ledger, self.name, state="teardown_failed", detail=msg)
            self._event("teardown_failed", detail={"cluster": self.name, "error": err,
                                                                          "delete_with": how})
            return f" -- TEARDOWN FAILED: {self.name} may still be billing; delete it with {how}"
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        registry.update(self.ledger, self.name, state="down", detail=f"torn down: {why}")
        self._event("teardown", detail={"cluster": self.name, "why": why})
        self.ledger.close_segment(self.run_id, ended_at=iso(self.clock()))
        return ""

    def _wait_cancelled(self, job_id: int) -> None:
        waited = 0.0
        while True:
            rec = self.client.managed_record(job_id)
            if rec is None or rec.status in MANAGED_TERMINAL:
                return
            if waited >= CANCEL_WAIT_S:
                raise TimeoutError(f"managed job {job_id} still {rec.status} {int(waited)} s after cancel")
            step = min(5.0, self.poll_s) or 0.0
            self.sleep(step)
            waited += max(step, 1.0)


def _epoch(ts: str) -> float:
    from ...ledger import parse_time

    return parse_time(ts).timestamp()


def _budget_of(ledger, run: dict):
    """The budget the run started with (stored in the ledger at launch). A run launched by an older rayctl
    has none stored: its recipe is read again; when that fails, the budget is not enforced and a warning
    says so (on stderr and as a `budget_unknown` event, recorded once)."""
    from ...recipe import Budget, load

    stored = run.get("budget")
    if isinstance(stored, dict):
        return Budget(max_usd=stored.get("max_usd"), max_hours=stored.get("max_hours"))
    path = run.get("recipe_path")
    why = "the run records no recipe file"
    if path:
        try:
            return load(path).budget
        except Exception as e:  # whatever it is, it is said below: never a silent "no budget"
            text = e.message if isinstance(e, RayctlError) else f"{type(e).__name__}: {e}"
            why = f"its recipe {path} cannot be read: " + (redact(text).strip().splitlines() or [""])[0][:300]
    sys.stderr.write(f"rayctl: warning: run {run['id']}: its budget is unknown (none was stored with the run, "
                     f"and {why}); the budget is not enforced for this run. Stop it with "
                     f"`rayctl stop {run['id']}` if it must not run on\n")
    sys.stderr.flush()
    if not ledger.events(run["id"], kind="budget_unknown"):
        ledger.add_event(run["id"], "budget_unknown", detail={"recipe_path": path, "error": why})
    return None
