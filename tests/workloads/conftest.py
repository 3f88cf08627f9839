"""Fixtures for the workload tests: a real local Ray cluster, job submission, S3.

`ray_address` (session) is the dashboard address (http://...) of the session's one shared
rayctl local cluster (`local_cluster` in tests/conftest.py): a real Ray head on 127.0.0.2
with its own ports and temp dir, stopped by its own processes at the end, never `ray stop`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs import launch_recipe
from raycluster import free_port

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def ray_address(local_cluster):
    """The session's one shared rayctl local cluster (tests/conftest.py), by its address."""
    return local_cluster.address


@pytest.fixture(scope="session")
def workloads_home(tmp_path_factory) -> Path:
    """One RAYCTL_HOME for the session, so the demo model is built once."""
    return tmp_path_factory.mktemp("wl-home")


@pytest.fixture
def wl_env(workloads_home, monkeypatch):
    """RAYCTL_HOME for job_spec (it resolves default storage and passes the home to jobs)."""
    monkeypatch.setenv("RAYCTL_HOME", str(workloads_home))
    return workloads_home


@pytest.fixture
def launch(ray_address, wl_env):
    """launch(path_or_text, run_id, overrides=None, timeout=300) -> Finished: job_spec + a real Ray job."""

    def _launch(recipe, run_id: str, overrides: dict | None = None, timeout: float = 300):
        return launch_recipe(ray_address, recipe, run_id, overrides=overrides, timeout=timeout)

    return _launch


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A local S3 (moto server) with bucket 'rayctl-test'; yields the env a job needs to reach it."""
    pytest.importorskip("flask", reason="moto[server] is needed for the S3 endpoint")
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    boto3.client("s3").create_bucket(Bucket="rayctl-test")
    try:
        yield env
    finally:
        server.stop()
