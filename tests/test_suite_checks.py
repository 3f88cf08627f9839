"""The suite's own rules: it is self-contained (the test catalog ships in tests/data),
a missing piece of required infrastructure is a failure in CI, and a process a test
leaves running fails the run (tests/suitecheck.py, tests/proctrack.py).

The checks run tiny pytest sessions of their own in a subprocess, with the plugin alone
(`-p tests.suitecheck`), so what is tested is exactly what the real suite runs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, SHARED_CATALOG, TEST_CATALOG

SHARED_SNAPSHOT = REPO.parent / "shared" / "catalog" / "skypilot-v7"


def inner_pytest(tmp_path, body: str, env: dict | None = None, args: tuple = ()) -> subprocess.CompletedProcess:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    full = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    full.update({"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]), "RAYCTL_TEST_LEAK_GRACE_S": "1"})
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.suitecheck", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", os.devnull, *args, str(tmp_path / "test_inner.py")],
                          capture_output=True, text=True, env=full, cwd=tmp_path, timeout=120)


def test_the_test_catalog_ships_in_the_repository():
    assert TEST_CATALOG == REPO / "tests" / "data" / "catalog" / "skypilot-v7"
    if "RAYCTL_TEST_CATALOG" not in os.environ:
        assert SHARED_CATALOG == TEST_CATALOG
    files = sorted(TEST_CATALOG.glob("*/vms.csv"))
    assert {f.parent.name for f in files} >= {"aws", "gcp", "lambda", "runpod"}
    assert sum(f.stat().st_size for f in files) < 600_000  # small: a test fixture, not a data set
    source = (TEST_CATALOG.parent / "SOURCE.md").read_text()
    assert "skypilot-org/skypilot-catalog" in source and "2026-11-25" in source
    for f in files:  # every file's upstream commit is recorded
        assert f"`catalogs/v7/{f.parent.name}/vms.csv` | `" in source, f


@pytest.mark.skipif(not SHARED_SNAPSHOT.is_dir(), reason="the workspace snapshot it was copied from is not here")
def test_the_test_catalog_rows_are_verbatim_rows_of_the_snapshot():
    for f in sorted(TEST_CATALOG.glob("*/vms.csv")):
        ours = f.read_bytes().splitlines(keepends=True)
        theirs = (SHARED_SNAPSHOT / f.parent.name / "vms.csv").read_bytes().splitlines(keepends=True)
        assert ours[0] == theirs[0], f
        it = iter(theirs)
        assert all(line in it for line in ours), f"{f}: not the snapshot's lines in its order"
        rows = list(csv.reader(line.decode() for line in ours[1:]))
        assert all(len(r) == len(next(csv.reader([ours[0].decode()]))) for r in rows), f


def test_require_infra_is_a_skip_locally_and_a_failure_in_ci(tmp_path):
    body = """
        import pytest
        from tests.suitecheck import INFRA_MISSING, require_infra

        def test_needs_the_catalog():
            require_infra("test catalog not found at /nowhere")

        def test_plain_skip_with_the_message():
            pytest.skip(INFRA_MISSING + "a Ray head did not start")

        def test_optional_tool():
            pytest.skip("the crontab command is not installed")
    """
    local = inner_pytest(tmp_path, body)
    assert local.returncode == 0 and "3 skipped" in local.stdout, local.stdout + local.stderr
    in_ci = inner_pytest(tmp_path, body, env={"CI": "true"})
    assert in_ci.returncode == 1, in_ci.stdout + in_ci.stderr
    assert "2 failed" in in_ci.stdout and "1 skipped" in in_ci.stdout, in_ci.stdout
    assert "test catalog not found at /nowhere" in in_ci.stdout and "a Ray head did not start" in in_ci.stdout
    assert inner_pytest(tmp_path, body, env={"CI": "false"}).returncode == 0


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["one-process", "xdist-workers"])
def test_a_process_a_test_leaves_running_fails_the_session_and_is_killed(tmp_path, args):
    # With pytest-xdist (the suite's default) each worker checks its own processes and the
    # controller fails the run on what they report.
    # A process of someone else's session on this machine (another marker): never flagged.
    other = subprocess.Popen(["sleep", "300"], start_new_session=True,
                             env=dict(os.environ, RAYCTL_TEST_SESSION="another-session"))
    try:
        r = inner_pytest(tmp_path, f"""
            import subprocess

            def test_leaves_a_daemon_behind():
                p = subprocess.Popen(["sleep", "301"], start_new_session=True)  # like `ray start`
                open({str(tmp_path / "pid")!r}, "w").write(str(p.pid))

            def test_cleans_up():
                p = subprocess.Popen(["sleep", "302"])
                p.kill()
                p.wait()
        """, args=args)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "2 passed" in r.stdout and "LEAKED PROCESSES" in r.stdout and "sleep 301" in r.stdout, r.stdout
        assert "sleep 300" not in r.stdout and "sleep 302" not in r.stdout
        leaked = int((tmp_path / "pid").read_text())
        deadline = time.monotonic() + 10
        while psutil.pid_exists(leaked) and psutil.Process(leaked).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the leaked process was not killed"
            time.sleep(0.1)
        assert other.poll() is None, "a process of another session was touched"
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("args", [(), ("-n", "2")], ids=["one-process", "xdist-workers"])
def test_a_clean_session_passes(tmp_path, args):
    r = inner_pytest(tmp_path, """
        import subprocess

        def test_runs_and_waits():
            subprocess.run(["true"], check=True)
    """, args=args)
    assert r.returncode == 0 and "LEAKED" not in r.stdout, r.stdout + r.stderr


def test_xdist_groups_keep_their_tests_on_one_worker(tmp_path):
    """The suite's xdist groups (the 2-node cluster, the real crontab: tests/conftest.py) hold only
    if pytest-xdist's --dist loadgroup works with the installed pytest (9.2 broke it)."""
    out = tmp_path / "workers.txt"
    r = inner_pytest(tmp_path, f"""
        import os

        import pytest

        pytestmark = pytest.mark.xdist_group("one")

        @pytest.mark.parametrize("i", range(6))
        def test_grouped(i):
            with open({str(out)!r}, "a") as f:
                f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
    """, args=("-n", "2", "--dist", "loadgroup"))
    assert r.returncode == 0, r.stdout + r.stderr
    workers = out.read_text().split()
    assert len(workers) == 6 and len(set(workers)) == 1, workers
