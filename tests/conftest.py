"""Shared test fixtures: paths, the test price catalog, an isolated RAYCTL_HOME, a CLI
runner, the session's local Ray cluster, and the session-end check for leaked processes.

The CLI is run as a real subprocess (`python -m rayctl`), so tests see exactly what a
user sees: stdout, stderr and the exit code.

Required infrastructure (the test catalog, a Ray head) is asked for with
`require_infra(reason)`: a skip on a developer machine, a failure when $CI is set.
Optional tools (a real `crontab` binary, vllm) stay plain skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.suitecheck import INFRA_MISSING, ci, require_infra  # noqa: F401 - tests import them from here
from tests.suitecheck import (  # noqa: F401 - the suite's hooks, registered through this conftest
    pytest_configure, pytest_runtest_makereport, pytest_sessionfinish, pytest_testnodedown)

REPO = Path(__file__).resolve().parents[1]
# The test catalog ships inside the repository (rows of skypilot-org/skypilot-catalog, see
# its SOURCE.md), so the suite needs nothing outside the clone. $RAYCTL_TEST_CATALOG may
# point the catalog tests at another folder in the same layout.
TEST_CATALOG = REPO / "tests" / "data" / "catalog" / "skypilot-v7"
SHARED_CATALOG = Path(os.environ.get("RAYCTL_TEST_CATALOG") or TEST_CATALOG)  # the name the tests import


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_catalog() -> Path:
    """The test price catalog (SkyPilot layout): tests/data/catalog/skypilot-v7, or $RAYCTL_TEST_CATALOG."""
    if not (SHARED_CATALOG / "aws" / "vms.csv").is_file():
        require_infra(f"test catalog not found at {SHARED_CATALOG} (is $RAYCTL_TEST_CATALOG right?)")
    return SHARED_CATALOG


@pytest.fixture
def rayctl_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "rayctl-home"
    monkeypatch.setenv("RAYCTL_HOME", str(home))
    monkeypatch.delenv("RAYCTL_CATALOG", raising=False)
    yield home
    stop_home_cluster(home)


def stop_home_cluster(home: Path) -> dict | None:
    """Stop the local Ray head a test started under its own RAYCTL_HOME (by that head's own
    processes, like `rayctl down`), if there is one: a test stops exactly what it started."""
    if not (home / "clusters" / "local" / "state.json").exists():
        return None
    from rayctl.providers import local

    return local.stop_cluster(home)


class CLIResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self) -> str:
        return f"CLIResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


def run_cli(*args, env: dict | None = None, cwd=None, timeout: float = 600, input: str | None = None) -> CLIResult:
    full_env = dict(os.environ)
    full_env.setdefault("RAYCTL_HOME", str(Path(cwd or ".").resolve() / ".rayctl-test-home"))
    full_env.pop("RAYCTL_DEBUG", None)
    full_env["COLUMNS"] = "200"
    if env:
        full_env.update({k: str(v) for k, v in env.items()})
    proc = subprocess.run([sys.executable, "-m", "rayctl", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout, input=input)
    return CLIResult(proc)


@pytest.fixture
def cli(rayctl_home, tmp_path):
    """Run `rayctl ARGS...` as a subprocess with an isolated RAYCTL_HOME and HOME."""
    fake_home = tmp_path / "home"
    fake_home.mkdir(exist_ok=True)

    def _run(*args, env: dict | None = None, **kw) -> CLIResult:
        e = {"RAYCTL_HOME": str(rayctl_home), "HOME": str(fake_home)}
        if env:
            e.update(env)
        return run_cli(*args, env=e, **kw)

    return _run


def assert_no_traceback(result) -> None:
    """No Python traceback in a finished CLI run's output (a CLIResult or a CompletedProcess)."""
    out = getattr(result, "out", None) or getattr(result, "stdout", "") or ""
    err = getattr(result, "err", None) or getattr(result, "stderr", "") or ""
    assert "Traceback" not in err, err
    assert "Traceback" not in out, out


# ---------------------------------------------------------------------------- parallel workers

def _needs_2n(item) -> bool:
    return item is not None and "local_cluster_2n" in getattr(item, "fixturenames", ())


def pytest_itemcollected(item):
    """The xdist groups (see below), marked as each test is collected: xdist reads the marks
    in its own pytest_collection_modifyitems, which may run before this conftest's."""
    if _needs_2n(item):
        item.add_marker(pytest.mark.xdist_group("cluster-2n"))
    elif item.path.name == "test_real_crontab.py":
        item.add_marker(pytest.mark.xdist_group("real-crontab"))


def pytest_collection_modifyitems(config, items):
    """The suite runs on two pytest-xdist workers (`-n 2 --dist loadgroup`, pyproject's addopts;
    `-n 0` runs it in one process). Each worker is a session of its own, with its own local Ray
    cluster. What only one worker may hold runs in one xdist group: the 2-node cluster (started
    once, not per worker) and the machine's real crontab.

    The 2-node cluster's tests also run one after another (moved up to the first of them), so
    the cluster is stopped after the last of them instead of idling to the session's end
    (`pytest_runtest_teardown`): three idle Ray clusters on 2 cores slow every other test."""
    two = [i for i in items if _needs_2n(i)]
    if two:
        first = items.index(two[0])
        rest = [i for i in items if not _needs_2n(i)]
        items[:] = rest[:first] + two + rest[first:]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last test on the 2-node cluster: stop it now (its session fixture's own
    teardown then finds nothing left to stop)."""
    if _needs_2n(item) and not _needs_2n(nextitem) and _CLUSTER_2N_HOME:
        from rayctl.providers import local

        local.stop_cluster(_CLUSTER_2N_HOME[0])


# ---------------------------------------------------------------------------- the shared local Ray cluster


RAYLET_WAIT = "RAY_raylet_start_wait_time_s"


@pytest.fixture(scope="session")
def local_cluster():
    """ONE rayctl-owned local Ray head for the whole test session.

    Started on first use (10-20 s), shared by every test that launches (through
    $RAYCTL_LOCAL_CLUSTER_DIR, which CLI subprocesses inherit, so each test keeps its
    own RAYCTL_HOME, ledger and logs), and stopped at the end of the session by its
    own processes only (never `ray stop`: other Ray clusters may share this machine).
    It runs with Ray's token auth on, as every rayctl-owned head does: talk to it with
    `rayctl.runs.cluster_api.auth_headers(address)` or `local.ray_env(cluster)`.
    """
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="rayctl-test-", dir="/tmp"))  # short: Ray's socket paths are limited
    cdir = base / "cluster"
    saved = {k: os.environ.get(k) for k in ("RAYCTL_LOCAL_CLUSTER_DIR", RAYLET_WAIT)}
    os.environ["RAYCTL_LOCAL_CLUSTER_DIR"] = str(cdir)
    # On a loaded 2-core machine the raylet can take over Ray's default 60 s to register.
    os.environ.setdefault(RAYLET_WAIT, "240")
    from rayctl.providers import local

    try:
        try:
            cluster = local.ensure_cluster()
        except Exception as e:  # noqa: BLE001 - required infrastructure: an error, never a skip
            pytest.fail(f"the session's local Ray head did not start: {e}", pytrace=False)
        yield cluster
    finally:
        try:
            local.stop_cluster()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            shutil.rmtree(base, ignore_errors=True)


_CLUSTER_2N_HOME: list = []  # the 2-node cluster's home, once started (stopped early: pytest_runtest_teardown)


@pytest.fixture(scope="session")
def local_cluster_2n():
    """ONE 2-node rayctl-owned local cluster for the session: the head on 127.0.0.2 and a worker
    raylet on 127.0.0.3, 1 CPU each (Ray token auth on, as every rayctl-owned cluster).

    Started on first use, in its own folder (so it never replaces the session's
    `local_cluster`), stopped after the last test that uses it (they run one after another,
    see `pytest_collection_modifyitems`) by its own processes only. It
    leaves $RAYCTL_LOCAL_CLUSTER_DIR alone: a test that launches on it asks for the
    function-scoped `use_local_cluster_2n`, which points that variable at it.
    `cluster.workers[0]` is the worker node's record (`ip`, `pid`, `raylet_pid`, `cpus`).
    """
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="rayctl-test2n-", dir="/tmp"))
    home = base / "h"  # the cluster folder is home/clusters/local; Ray's temp dir a short /tmp/rayctl-<hash>
    _CLUSTER_2N_HOME[:] = [home]
    saved = os.environ.get(RAYLET_WAIT)
    os.environ.setdefault(RAYLET_WAIT, "240")
    from rayctl.providers import local

    try:
        try:
            cluster = local.ensure_cluster(nodes=2, cpus=1, home=home)
        except Exception as e:  # noqa: BLE001 - required infrastructure: an error, never a skip
            pytest.fail(f"the session's 2-node local Ray cluster did not start: {e}", pytrace=False)
        cluster.cluster_dir = str(local.cluster_dir(home))
        yield cluster
    finally:
        try:
            local.stop_cluster(home)
        finally:
            if saved is None:
                os.environ.pop(RAYLET_WAIT, None)
            else:
                os.environ[RAYLET_WAIT] = saved
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def use_local_cluster_2n(local_cluster_2n, monkeypatch):
    """The 2-node cluster as this test's local target: $RAYCTL_LOCAL_CLUSTER_DIR points at it (CLI
    subprocesses and `local.read_state()` find it); launch with `resources: {nodes: 2, cpus: 1}`."""
    from rayctl.providers import local

    monkeypatch.setenv("RAYCTL_LOCAL_CLUSTER_DIR", local_cluster_2n.cluster_dir)
    return local.read_state() or local_cluster_2n

