"""Ray jobs through the Ray Jobs API: submit, follow, stop, and why a job failed.

What jobs report on stdout (`::rayctl::` lines) is read with `rayctl.protocol`; anything
else in the log is passed through untouched and never parsed for meaning.

Every function here talks to the cluster's dashboard address (`http://host:8265`), so
the same code serves the local head, an existing cluster and a cloud head.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Callable

from ..errors import InputError, RayctlError

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
PROBE_TIMEOUT_S = 5.0
STOP_WAIT_S = 20.0
PENDING_TIMEOUT_S = float(os.environ.get("RAYCTL_PENDING_TIMEOUT", 300))
BUSY_TIMEOUT_S = float(os.environ.get("RAYCTL_BUSY_TIMEOUT", 30))
HEAD_DEAD_S = float(os.environ.get("RAYCTL_HEAD_DEAD_TIMEOUT", 12))  # Jobs API silent this long: head died
REQUEST_TIMEOUT_S = 5.0
STARVED_WARN_S = 45.0


# ---------------------------------------------------------------------------- connecting


@dataclass(frozen=True)
class Address:
    """A dashboard URL taken apart: `url` without credentials (safe to print and store), and the
    credentials from `http://user:pw@host:8265` as an HTTP Basic `Authorization` header."""

    url: str
    host: str
    port: int | None
    basic: dict = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return self.url


def parse_address(address: str, where: str = "--target") -> Address:
    """`http(s)://[user:pw@]host[:port][/path]` -> Address; InputError for anything else.

    The error never repeats the credentials.
    """
    shown = redact_url(address)
    try:
        u = urllib.parse.urlsplit(str(address).strip())
        port = u.port
        host = u.hostname
    except ValueError as e:
        raise InputError(f"{where}: '{shown}' is not a valid URL ({e}); use an existing Ray cluster's "
                         "dashboard address such as http://head:8265") from None
    if u.scheme not in ("http", "https") or not host:
        raise InputError(f"{where}: '{shown}' is not a Ray dashboard address; use one such as http://head:8265")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    url = urllib.parse.urlunsplit((u.scheme, netloc, u.path.rstrip("/"), "", ""))
    basic = {}
    if u.username is not None or u.password is not None:
        import base64

        cred = f"{urllib.parse.unquote(u.username or '')}:{urllib.parse.unquote(u.password or '')}"
        basic = {"Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}
    return Address(url=url, host=host, port=port, basic=basic)


from ..redact import redact_url  # noqa: E402  (re-exported: jobs.redact_url)


def _is_loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("localhost", "::1")


def _local_cluster_for(url: str):
    """The rayctl-owned local cluster when `url` is its dashboard, else None."""
    try:
        from ..providers import local as local_provider

        state = local_provider.read_state()
    except Exception:  # noqa: BLE001 - no local cluster state: not ours
        return None
    return state if state is not None and state.address.rstrip("/") == url.rstrip("/") else None


def auth_headers(address: str) -> dict:
    """HTTP headers for a cluster's dashboard / Jobs API.

    - the rayctl-owned local cluster: its Ray auth token (`$RAYCTL_HOME/clusters/local/auth_token`);
    - otherwise the token from `RAY_AUTH_TOKEN` or the file in `RAY_AUTH_TOKEN_PATH`, when
      `RAY_AUTH_MODE=token` (an existing cluster with Ray token auth);
    - credentials in the URL (`http://user:pw@host:8265`, a proxy in front of the dashboard) as
      HTTP Basic auth; the Ray token then goes in `X-Ray-Authorization` (Ray's dashboard reads it
      when the proxy passes no `Authorization` on).
    """
    a = address if isinstance(address, Address) else parse_address(address)
    token = None
    local = _local_cluster_for(a.url)
    if local is not None:  # rayctl's own head: no proxy in front, only its token counts
        from ..providers import local as local_provider

        return local_provider.auth_headers(local)
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        token = os.environ.get("RAY_AUTH_TOKEN")
        if not token and os.environ.get("RAY_AUTH_TOKEN_PATH"):
            try:
                with open(os.path.expanduser(os.environ["RAY_AUTH_TOKEN_PATH"])) as f:
                    token = f.read().strip() or None
            except OSError:
                token = None
    headers = dict(a.basic)
    if token:
        headers["X-Ray-Authorization" if headers else "Authorization"] = f"Bearer {token}"
    return headers


def _get(address: str, path: str, timeout: float = PROBE_TIMEOUT_S):
    a = address if isinstance(address, Address) else parse_address(address, "address")
    req = urllib.request.Request(a.url + path, headers=auth_headers(a))
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(a.host) else []
    with urllib.request.build_opener(*handlers).open(req, timeout=timeout) as r:
        return json.loads(r.read().decode() or "null")


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """The cluster's `/api/version`, or a clear error within `timeout` seconds."""
    a = parse_address(address, "address")
    address = a.url  # what errors show: never the credentials
    try:
        v = _get(a, "/api/version", timeout)
    except urllib.error.HTTPError as e:
        hint = (" The cluster uses token auth: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
                "RAY_AUTH_TOKEN_PATH), or put user:password in the URL for a proxy with basic auth."
                if e.code in (401, 403) else "")
        raise InputError(f"the Ray cluster at {address} answered HTTP {e.code} on /api/version; is this "
                         f"a Ray dashboard address (http://HEAD:8265)?{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        why = redact_url(getattr(e, "reason", e))
        raise InputError(f"cannot reach a Ray cluster at {address}: {why}. Check the address (the head's "
                         "dashboard, e.g. http://HEAD:8265) and that the cluster is up.") from None
    except ValueError:
        raise InputError(f"{address} answered, but not like a Ray dashboard (no JSON on /api/version)") from None
    if not isinstance(v, dict) or "ray_version" not in v:
        raise InputError(f"{address} answered, but not like a Ray dashboard (no ray_version on /api/version)")
    return v


def _no_proxy_for(host: str) -> None:
    """Loopback never goes through an HTTP proxy (Ray's client uses `requests`, which reads NO_PROXY)."""
    if not _is_loopback(host):
        return
    for k in ("NO_PROXY", "no_proxy"):
        cur = os.environ.get(k, "")
        if host not in cur.split(","):
            os.environ[k] = f"{cur},{host}" if cur else host


def client(address: str):
    """A Ray `JobSubmissionClient` for `address`, after a fast reachability probe.

    Auth travels as explicit headers (`auth_headers`): the process's RAY_AUTH_* settings are
    neither needed nor changed.
    """
    a = parse_address(address, "address")
    _no_proxy_for(a.host)
    probe(address)
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise InputError("submitting Ray jobs needs Ray: pip install 'rayctl[local]'") from None
    _quiet_ray_logs()
    try:
        return JobSubmissionClient(a.url, headers=auth_headers(a) or None)
    except (ConnectionError, RuntimeError) as e:
        raise InputError(f"cannot use the Ray Jobs API at {a.url}: {redact_url(e)}") from None


def _quiet_ray_logs() -> None:
    import logging

    if not os.environ.get("RAYCTL_DEBUG"):
        for name in ("ray", "ray.dashboard", "ray.dashboard.modules.dashboard_sdk"):
            logging.getLogger(name).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------- resources


def cluster_resources(address: str, timeout: float = 5.0) -> dict | None:
    """{"CPU": (used, total), "GPU": (used, total), ..., "_demand": [...]}; None if unknown.

    From the dashboard's autoscaler status (updated every few seconds by the head).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            doc = _get(address, "/api/cluster_status?format=0", 3.0)
            report = ((doc or {}).get("data") or {}).get("clusterStatus") or {}
            load = report.get("loadMetricsReport") if isinstance(report, dict) else None
            if load and load.get("usage"):
                out = {k: (float(v[0]), float(v[1])) for k, v in load["usage"].items()
                       if isinstance(v, list) and len(v) == 2}
                out["_demand"] = list(load.get("resourceDemand") or []) + list(load.get("pgDemand") or [])
                return out
        except (urllib.error.URLError, OSError, ValueError, AttributeError, TypeError):
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def describe_resources(res: dict | None) -> str:
    if not res:
        return "unknown"
    parts = []
    for k in ("CPU", "GPU"):
        if k in res:
            used, total = res[k]
            parts.append(f"{_fmt(used)}/{_fmt(total)} {k} in use")
    return ", ".join(parts) or "no CPU/GPU reported"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


class ResourcesBusy(RayctlError):
    """The cluster could run the job, but other work holds the resources now (exit 1)."""

    job_stopped = True  # when raised by `follow`, the job was already stopped


def check_fits(address: str, needs_cpus: float, needs_gpus: float, res: dict | None = None) -> None:
    """InputError (exit 2) when the cluster has fewer CPUs/GPUs in all than the job needs."""
    if not needs_cpus and not needs_gpus:
        return
    res = res if res is not None else cluster_resources(address)
    if res is None:
        return
    for name, need in (("CPU", needs_cpus), ("GPU", needs_gpus)):
        total = res.get(name, (0.0, 0.0))[1]
        if need and need > total + 1e-9:
            what = "no GPUs" if name == "GPU" and total == 0 else f"{_fmt(total)} {name}(s) in all"
            fix = ("run it on a cluster with GPUs (target: cloud), or set the workload to use CPUs"
                   if name == "GPU" else
                   "lower the workload's workers/concurrency, or give the cluster more CPUs (for the local "
                   "cluster: resources.cpus in the recipe or RAYCTL_LOCAL_CPUS, then `rayctl down`)")
            raise InputError(f"the job needs {_fmt(need)} {name}(s) but the Ray cluster at {redact_url(address)} has {what}; "
                             f"it would wait forever. {fix}.")


def check_resources(address: str, needs_cpus: float, needs_gpus: float, *, busy_hint: str = "",
                    settle_s: float = 8.0) -> list[str]:
    """Refuse a job that cannot be scheduled instead of letting it hang.

    Never fits (the cluster has fewer CPUs/GPUs in all) -> InputError (exit 2).
    Fits, but other work holds them -> ResourcesBusy (exit 1), after `settle_s` for
    a job that just ended to give its resources back. Returns warnings.
    """
    if not needs_cpus and not needs_gpus:
        return []
    res = cluster_resources(address)
    if res is None:
        return [f"could not read the cluster's resources at {redact_url(address)}; submitting without a resource check"]
    check_fits(address, needs_cpus, needs_gpus, res)
    deadline = time.monotonic() + settle_s
    while True:
        short = [(n, need, res.get(n, (0.0, 0.0))) for n, need in (("CPU", needs_cpus), ("GPU", needs_gpus))
                 if need and need > res.get(n, (0.0, 0.0))[1] - res.get(n, (0.0, 0.0))[0] + 1e-9]
        if not short:
            return []
        if time.monotonic() > deadline:
            n, need, (used, total) = short[0]
            raise ResourcesBusy(
                f"the job needs {_fmt(need)} {n}(s) but only {_fmt(total - used)} of {_fmt(total)} are free on "
                f"the Ray cluster at {redact_url(address)}; the rest are held by other work{busy_hint}. It would wait "
                "for them; stop that work first (`rayctl stop RUN`) or launch again later.")
        time.sleep(1.0)
        res = cluster_resources(address) or res


# ---------------------------------------------------------------------------- jobs


def submit(cl, spec, submission_id: str, extra_env: dict | None = None, metadata: dict | None = None) -> str:
    """Submit `spec` (a workloads.JobSpec) as a Ray job whose id is `submission_id`."""
    runtime_env = dict(spec.runtime_env or {})
    env_vars = {str(k): str(v) for k, v in (runtime_env.get("env_vars") or {}).items()}
    for k, v in (extra_env or {}).items():
        env_vars.setdefault(k, str(v))
    if env_vars:
        runtime_env["env_vars"] = env_vars
    meta = {str(k): str(v) for k, v in {**(spec.metadata or {}), **(metadata or {})}.items()}
    kw = {}
    if spec.entrypoint_num_cpus:
        kw["entrypoint_num_cpus"] = spec.entrypoint_num_cpus
    if spec.entrypoint_num_gpus:
        kw["entrypoint_num_gpus"] = spec.entrypoint_num_gpus
    try:
        return cl.submit_job(entrypoint=spec.entrypoint, runtime_env=runtime_env or None,
                             submission_id=submission_id, metadata=meta or None, **kw)
    except (RuntimeError, ValueError, OSError) as e:
        from ..redact import is_secret_name, redact

        # Ray may echo the runtime env back: never a secret value in the message.
        msg = redact(str(e), tuple(v for k, v in env_vars.items() if is_secret_name(k)))
        if "working_dir" in msg or "py_modules" in msg or "runtime_env" in msg.lower():
            raise InputError(f"Ray refused the job's runtime environment: {msg}") from None
        raise RayctlError(f"submitting the job to {cl._address} failed: {msg}") from None


def status_of(cl, job_id: str) -> str:
    s = cl.get_job_status(job_id)
    return getattr(s, "value", str(s))


def job_doc(address: str, job_id: str, timeout: float = REQUEST_TIMEOUT_S) -> dict | None:
    """The job's record from the Jobs API (`GET /api/jobs/ID`) within `timeout` s; None if Ray has no such job.

    Raises OSError / urllib.error.URLError / ValueError when the cluster does not answer
    (the Ray SDK's own client has no timeout: a head whose GCS died hangs it for a minute).
    """
    try:
        doc = _get(address, f"/api/jobs/{urllib.parse.quote(job_id)}", timeout)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    if not isinstance(doc, dict) or "status" not in doc:
        raise ValueError(f"unexpected answer from {address}/api/jobs/{job_id}")
    return doc


def job_logs(address: str, job_id: str, timeout: float = 10.0) -> str:
    doc = _get(address, f"/api/jobs/{urllib.parse.quote(job_id)}/logs", timeout)
    return (doc or {}).get("logs") or "" if isinstance(doc, dict) else ""


class HeadDied(RayctlError):
    """The cluster's head (GCS, raylet or dashboard) stopped answering under a running job (exit 1)."""

    job_stopped = True  # nothing left to stop: the job died with its head


def head_died_message(address: str, silent_s: float) -> str:
    return (f"the Ray cluster at {redact_url(address)} stopped answering (its head process died?): its Jobs API failed "
            f"for {silent_s:.0f} s in a row while following the job")


def stop(cl, job_id: str, wait: float = STOP_WAIT_S) -> str:
    """Stop the job (SIGTERM to its driver, then SIGKILL) and wait for a final status.

    A PENDING job cannot end before Ray schedules its supervisor: the stop is queued
    and Ray ends the job before its entrypoint starts. That returns "PENDING" after
    a short wait instead of blocking.
    """
    try:
        cl.stop_job(job_id)
    except RuntimeError:
        pass  # already finished, or unknown: the status says which
    t0 = time.monotonic()
    st = status_of(cl, job_id)
    while st not in TERMINAL and time.monotonic() - t0 < wait:
        if st == "PENDING" and time.monotonic() - t0 > 2.0:
            break
        time.sleep(0.2)
        st = status_of(cl, job_id)
    return st


def stopped_words(final: str) -> str:
    if final == "PENDING":
        return "stop requested; Ray ends it before its entrypoint starts"
    return f"Ray job {final}"


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
        want = ", ".join(f"{_fmt(v)} {k}" for s in shapes[:3] for k, v in s.items())
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
                                f"{_fmt(cpu[1])} CPUs are in use ({describe_resources(res)}); the job may be "
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
