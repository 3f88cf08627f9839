"""Ray jobs through the Ray Jobs API: submit, stop, and their status.

What jobs report on stdout (`::rayctl::` lines) is read with `rayctl.protocol`; anything
else in the log is passed through untouched and never parsed for meaning.

Every function here talks to the cluster's dashboard address (`http://host:8265`), so
the same code serves the local head, an existing cluster and a cloud head. Beside it:
`cluster_api` (address, auth, probe, client), `capacity` (resources and fit checks) and
`follow` (following a job to its end).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse

from ..errors import InputError, RayctlError
from .cluster_api import _get

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
STOP_WAIT_S = 20.0
REQUEST_TIMEOUT_S = 5.0


# ---------------------------------------------------------------------------- submit, status, stop


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
        from ..redact import redact, secret_values

        # Ray may echo the runtime env back: never a secret value in the message.
        msg = redact(str(e), secret_values(env_vars))
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
