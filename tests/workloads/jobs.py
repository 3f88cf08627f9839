"""Submitting a built-in workload's JobSpec as a real Ray job (Jobs API) and waiting for it."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Finished:
    job_id: str
    status: str
    logs: str
    metrics: dict = field(default_factory=dict)
    progress: list = field(default_factory=list)
    seconds: float = 0.0


def submit(address: str, spec, timeout: float = 300) -> Finished:
    """Submit a JobSpec as a real Ray job and wait (bounded) for it to end."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from rayctl import protocol

    from rayctl.runs.cluster_api import auth_headers

    client = JobSubmissionClient(address, headers=auth_headers(address) or None)
    t0 = time.monotonic()
    job_id = client.submit_job(entrypoint=spec.entrypoint, runtime_env=spec.runtime_env,
                               entrypoint_num_cpus=spec.entrypoint_num_cpus,
                               entrypoint_num_gpus=spec.entrypoint_num_gpus or None,
                               metadata={str(k): str(v) for k, v in spec.metadata.items()})
    status = None
    while time.monotonic() - t0 < timeout:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        time.sleep(1)
    else:
        client.stop_job(job_id)
        logs = client.get_job_logs(job_id)
        pytest.fail(f"job {job_id} did not finish in {timeout:.0f} s; log tail:\n{logs[-4000:]}")
    logs = client.get_job_logs(job_id)
    lines = logs.splitlines()
    events = [e for e in (protocol.parse_line(x) for x in lines) if e]
    return Finished(job_id, str(status.value if hasattr(status, "value") else status), logs,
                    protocol.merge_metrics(lines), [e for e in events if e["type"] == "progress"],
                    time.monotonic() - t0)


def launch_recipe(address: str, recipe, run_id: str, overrides: dict | None = None, timeout: float = 300) -> Finished:
    """Load a recipe (a path), apply workload overrides, build its JobSpec and run it."""
    from rayctl import recipe as R
    from rayctl.workloads.common import MODULES

    rec = R.load(recipe) if isinstance(recipe, (str, Path)) else recipe
    if overrides:
        rec.workload.update(overrides)
    mod = importlib.import_module(f"rayctl.workloads.{MODULES[rec.kind]}")
    return submit(address, mod.job_spec(rec, run_id), timeout=timeout)
