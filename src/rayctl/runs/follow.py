"""Following a Ray job to its end: its log lines live, its status, and why it failed.

While it follows, it stops the job and says why when it waits for resources other work
holds (ResourcesBusy), stays PENDING too long or runs past its time limit (JobStuck), or
the head stops answering under it (HeadDied).
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import RayctlError
from ..redact import redact_url
from .capacity import ResourcesBusy, fmt_amount, cluster_resources, describe_resources
from .jobs import REQUEST_TIMEOUT_S, TERMINAL, job_doc, job_logs, status_of, stop, stopped_words

PENDING_TIMEOUT_S = float(os.environ.get("RAYCTL_PENDING_TIMEOUT", 300))
BUSY_TIMEOUT_S = float(os.environ.get("RAYCTL_BUSY_TIMEOUT", 30))
HEAD_DEAD_S = float(os.environ.get("RAYCTL_HEAD_DEAD_TIMEOUT", 12))  # Jobs API silent this long: head died
STARVED_WARN_S = 45.0


class HeadDied(RayctlError):
    """The cluster's head (GCS, raylet or dashboard) stopped answering under a running job (exit 1)."""

    job_stopped = True  # nothing left to stop: the job died with its head


def head_died_message(address: str, silent_s: float) -> str:
    return (f"the Ray cluster at {redact_url(address)} stopped answering (its head process died?): its Jobs API failed "
            f"for {silent_s:.0f} s in a row while following the job")


class JobStuck(RayctlError):
    """The job never started running (PENDING too long), or ran past its time limit."""

    job_stopped = True


@dataclass
class Outcome:
    status: str  # SUCCEEDED | FAILED | STOPPED
    message: str
    info: object
    last_lines: list


_WORKLOAD_ERR = "rayctl: workload error:"
_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")


def failure_reason(message: str, lines: list[str], error: str | None = None) -> str:
    """One line saying why a job failed: Ray's verdict plus the exception the job raised.

    `error`: the `error` metric a built-in workload reported (its own words), if any.
    """
    head = (message or "").strip().splitlines()[0] if (message or "").strip() else "the job failed"
    head = head.split(", last available logs")[0].rstrip(",. ")
    # A built-in workload says why it failed in one line; whatever Ray prints while the
    # driver shuts down after it (e.g. "RuntimeError: Ray is not initialized" from a
    # thread still running) is noise, not the cause.
    exc = next((ln.strip()[ln.strip().find(_WORKLOAD_ERR) + len(_WORKLOAD_ERR):].strip()
                for ln in reversed(lines) if _WORKLOAD_ERR in ln), None)
    if not exc and isinstance(error, str) and error.strip():
        exc = error.strip().splitlines()[0]
    exc = exc or next((ln.strip() for ln in reversed(lines) if _EXC_LINE.match(ln.strip())), None)
    reason = f"{head}: {exc}" if exc else head
    return reason[:500]


def _check_pending(cl, job_id: str, address: str, waiting_since, now: float, busy_timeout: float,
                   busy_hint: str):
    """A PENDING job while the cluster has unmet resource demand for `busy_timeout` s: stop it, say why.

    (Demand the cluster can never meet is refused before submission by `check_resources`.)
    """
    res = cluster_resources(address, timeout=1.0)
    demand = (res or {}).get("_demand") or []
    shapes = [d[0] for d in demand if isinstance(d, list) and d and isinstance(d[0], dict)]
    shapes += [b for d in demand if isinstance(d, dict) for b in (d.get("bundles") or []) if isinstance(b, dict)]
    if not shapes:
        return None
    waiting_since = waiting_since or now
    if now - waiting_since >= busy_timeout:
        final = stop(cl, job_id)
        want = ", ".join(f"{fmt_amount(v)} {k}" for s in shapes[:3] for k, v in s.items())
        raise ResourcesBusy(
            f"the job waited {now - waiting_since:.0f} s for resources ({want}) that are held by other work on the "
            f"Ray cluster at {redact_url(address)} ({describe_resources(res)}){busy_hint}; it was stopped ({final}). Stop that "
            "work first (`rayctl stop RUN`), or launch again later (RAYCTL_BUSY_TIMEOUT sets the wait).")
    return waiting_since


class _Tail(threading.Thread):
    """Streams a job's log chunks into a queue (Ray's websocket tail)."""

    def __init__(self, cl, job_id: str):
        super().__init__(daemon=True, name=f"rayctl-tail-{job_id}")
        self.cl, self.job_id = cl, job_id
        self.q: queue.Queue = queue.Queue()
        self.failed = False
        self._loop = None
        self._task = None

    def run(self) -> None:
        import asyncio

        async def go():
            async for chunk in self.cl.tail_job_logs(self.job_id):
                self.q.put(chunk)

        try:
            self._loop = asyncio.new_event_loop()
            self._task = self._loop.create_task(go())
            self._loop.run_until_complete(self._task)
        except BaseException:  # noqa: BLE001 - a broken tail falls back to polling
            self.failed = True
        finally:
            if self._loop is not None:
                try:
                    self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                except BaseException:  # noqa: BLE001
                    pass
                self._loop.close()

    def cancel(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass
        self.join(timeout=2.0)


def follow(cl, job_id: str, *, on_line: Callable[[str], None],
           on_status: Callable[[str, str], None] | None = None,
           on_warning: Callable[[str], None] | None = None,
           pending_timeout: float = PENDING_TIMEOUT_S, busy_timeout: float = BUSY_TIMEOUT_S,
           time_limit: float | None = None, address: str | None = None, busy_hint: str = "",
           poll: float = 0.25, head_dead_s: float = HEAD_DEAD_S) -> Outcome:
    """Stream the job's log lines to `on_line` until it ends; return how it ended.

    Lines arrive live through Ray's log tail; when the job reaches a final status the
    full log is read once more so no line is lost. The job is stopped, and an error
    raised, when it waits PENDING for resources that other work holds for over
    `busy_timeout` s (ResourcesBusy), or for resources the cluster does not have
    (InputError), stays PENDING over `pending_timeout` s for any reason, or runs
    over `time_limit` s (JobStuck). When the Jobs API fails or does not answer for
    `head_dead_s` s in a row, the head died under the job (HeadDied). KeyboardInterrupt
    propagates (the caller stops the job).
    """
    api = address or cl._address
    tail = _Tail(cl, job_id)
    tail.start()
    emitted = 0
    buf = ""
    recent: list[str] = []
    started = time.monotonic()
    running_since = None
    last_status = None
    next_status = 0.0
    next_poll_logs = 0.0
    starved_since = None
    starve_warned = False
    next_starve = time.monotonic() + 10.0
    waiting_since = None
    next_pending_check = time.monotonic() + 2.0
    silent_since = None

    def emit(text: str) -> None:
        nonlocal emitted, buf
        buf += text
        *lines, buf = buf.split("\n")
        for ln in lines:
            emitted += 1
            recent.append(ln)
            if len(recent) > 200:
                del recent[:100]
            on_line(ln)

    try:
        while True:
            try:
                while True:
                    emit(tail.q.get_nowait())
            except queue.Empty:
                pass
            now = time.monotonic()
            if (tail.failed or not tail.is_alive()) and now >= next_poll_logs:  # no websocket: poll the log
                next_poll_logs = now + 1.0
                try:
                    text = job_logs(api, job_id, timeout=REQUEST_TIMEOUT_S)
                except (OSError, ValueError):
                    text = None  # the status poll below counts the silence
                if text is not None:
                    lines = text.split("\n")
                    complete = lines[:-1]
                    for ln in complete[emitted:]:
                        emitted += 1
                        recent.append(ln)
                        on_line(ln)
                    buf = ""
            if now >= next_status:
                next_status = now + poll
                try:
                    doc = job_doc(api, job_id)
                except (OSError, ValueError):  # URLError, timeouts, HTTP 500 from a head whose GCS died
                    doc = None
                    silent_since = silent_since or now
                    if time.monotonic() - silent_since >= head_dead_s:
                        raise HeadDied(head_died_message(api, time.monotonic() - silent_since)) from None
                    continue
                silent_since = None
                if doc is None:
                    st = status_of(cl, job_id)  # not in the REST answer: let the SDK say what is wrong
                else:
                    st = str(doc["status"])
                if st != last_status:
                    last_status = st
                    if st == "RUNNING":
                        running_since = now
                    if on_status and st not in TERMINAL:
                        on_status(st, "")
                if st in TERMINAL:
                    break
                if st == "PENDING" and address and now >= next_pending_check:
                    next_pending_check = now + 2.0
                    waiting_since = _check_pending(cl, job_id, address, waiting_since, now, busy_timeout,
                                                   busy_hint)
                if st == "PENDING" and now - started > pending_timeout:
                    res = cluster_resources(address, timeout=2.0) if address else None
                    final = stop(cl, job_id)
                    raise JobStuck(
                        f"the job stayed PENDING for {pending_timeout:.0f} s and was stopped ({stopped_words(final)}); "
                        f"the cluster has {describe_resources(res)}. It was waiting for resources the cluster "
                        "lacks or for its runtime environment (pip/working_dir) to install; see "
                        "RAYCTL_PENDING_TIMEOUT in docs/launch.md")
                if time_limit and running_since is not None and now - running_since > time_limit:
                    final = stop(cl, job_id)
                    raise JobStuck(f"the job ran past its time limit ({time_limit / 3600:.2f} h, budget.max_hours) "
                                   f"and was stopped ({stopped_words(final)})")
                if address and on_warning and st == "RUNNING" and not starve_warned and now >= next_starve:
                    next_starve = now + 10.0
                    res = cluster_resources(address, timeout=1.0)
                    cpu = (res or {}).get("CPU")
                    if res and res.get("_demand") and cpu and cpu[0] >= cpu[1] - 1e-9:
                        starved_since = starved_since or now
                        if now - starved_since >= STARVED_WARN_S:
                            starve_warned = True
                            on_warning(
                                f"work has waited over {STARVED_WARN_S:.0f} s for resources while all "
                                f"{fmt_amount(cpu[1])} CPUs are in use ({describe_resources(res)}); the job may be "
                                "starved, e.g. by a Serve app or another job holding CPUs. Ctrl-C or "
                                "`rayctl stop RUN` stops it.")
                    else:
                        starved_since = None
            time.sleep(0.05 if not tail.q.empty() else min(poll, 0.1))
        # Final: read the whole log once, emit whatever the tail had not delivered yet.
        tail.cancel()
        try:
            while True:
                emit(tail.q.get_nowait())
        except queue.Empty:
            pass
        full = cl.get_job_logs(job_id)
        lines = full.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) >= emitted:
            buf = ""
            for ln in lines[emitted:]:
                emitted += 1
                recent.append(ln)
                on_line(ln)
        elif buf:
            on_line(buf)
        info = cl.get_job_info(job_id)
        st = getattr(info.status, "value", str(info.status))
        return Outcome(status=st, message=info.message or "", info=info, last_lines=recent[-200:])
    finally:
        tail.cancel()
