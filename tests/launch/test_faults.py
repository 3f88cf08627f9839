"""Concurrency and faults on real Ray clusters: admission of concurrent launches (refuse
or queue), a head that dies under a job, a `rayctl launch` killed with -9, and SIGINT
when the launch was started with SIGINT ignored (a shell's background job)."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import psutil
import pytest

from launch_helpers import ledger_rows, popen_cli, processes_with, ray_job_status, wait_for

pytestmark = [pytest.mark.slow]


def _rows(home):
    return ledger_rows(home) if (home / "ledger.db").exists() else []


def _row(home, recipe):
    rows = [r for r in _rows(home) if r["recipe"] == recipe]
    return rows[0] if rows else None


def _job_running(address, row) -> bool:
    if not row or not row.get("ray_job_id"):
        return False
    try:
        return ray_job_status(address, row["ray_job_id"]) == "RUNNING"
    except OSError:
        return False


def _finish(*procs):
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()
            p.communicate(timeout=30)


@pytest.mark.timeout(240)
def test_a_launch_started_with_sigint_ignored_still_stops_on_sigint(make_recipe, local_cluster, rayctl_home):
    marker = f"bgint-{uuid.uuid4().hex[:8]}"
    proc = popen_cli("launch", make_recipe(name="bgint", args=f"10000 {marker}"), home=rayctl_home,
                     sigint_ignored=True)
    try:
        wait_for(lambda: _job_running(local_cluster.address, _row(rayctl_home, "bgint")), 90, "the job to run")
        wait_for(lambda: processes_with(marker), 30, "the job's driver process")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        _finish(proc)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    row = _row(rayctl_home, "bgint")
    assert row["status"] == "interrupted" and row["ended_at"]
    assert ray_job_status(local_cluster.address, row["id"]) == "STOPPED"
    wait_for(lambda: not processes_with(marker), 30, "no orphan driver")


@pytest.mark.timeout(420)
def test_concurrent_launches_are_admitted_one_at_a_time(cli, make_recipe, local_cluster, rayctl_home):
    """Two launches that each need the whole head: one runs, the other is refused at once (never a
    silent stall); with --wait a third is `queued` in `rayctl runs` and runs once the first ends."""
    total = local_cluster.num_cpus
    whole = f"resources:\n  cpus: {total}\n"
    a = popen_cli("launch", make_recipe(name="first", args="10000", extra=whole), home=rayctl_home)
    b = popen_cli("launch", make_recipe(name="second", args="10000", extra=whole), home=rayctl_home)
    c = None
    try:
        def one_exited():
            return [p for p in (a, b) if p.poll() is not None]

        t0 = time.monotonic()
        [refused] = wait_for(one_exited, 120, "one of the two launches to be refused")
        runner, runner_name = (b, "second") if refused is a else (a, "first")
        refused_name = "first" if refused is a else "second"
        _, err = refused.communicate(timeout=10)
        assert refused.returncode == 1, err
        assert "Traceback" not in err and "held by other work" in err and "--wait" in err
        running = wait_for(lambda: _row(rayctl_home, runner_name) if _job_running(
            local_cluster.address, _row(rayctl_home, runner_name)) else None, 120, "the admitted job to run")
        assert running["id"] in err  # the refusal names the run holding the CPUs
        r = _row(rayctl_home, refused_name)
        assert r["status"] == "failed" and "held by other work" in r["reason"] and r["ray_job_id"] is None
        assert time.monotonic() - t0 < 150

        # A queued launch: visible in `rayctl runs` with what it waits for, admitted when the CPUs free up.
        c = popen_cli("launch", make_recipe(name="third", args="2", extra=whole), "--wait", "180",
                      home=rayctl_home)

        def queued():
            row = _row(rayctl_home, "third")
            return row if row and row["status"] == "queued" else None

        q = wait_for(queued, 90, "the third launch to be queued")
        assert running["id"] in q["reason"] and q["reason"].startswith("waiting for")
        res = cli("runs")
        assert res.code == 0 and "queued" in res.out and f"{q['id']} queued: waiting for" in res.out
        assert json.loads(cli("runs", "--json").out)["runs"][0]["status"] == "queued"
        assert cli("stop", running["id"]).code == 0
        out, err = c.communicate(timeout=180)
        assert c.returncode == 0, err
        assert "queued: waiting for" in err and "admitted" in err
        third = _row(rayctl_home, "third")
        assert third["status"] == "succeeded" and third["rows"] == 2 and third["reason"] is None
        _, err = runner.communicate(timeout=60)
        assert runner.returncode == 1  # stopped
    finally:
        _finish(a, b, c)


@pytest.mark.timeout(300)
def test_killed_launch_is_reconciled_by_runs(cli, make_recipe, local_cluster, rayctl_home):
    """kill -9 of `rayctl launch`: `rayctl runs` keeps the run honest and completes its saved log."""
    recipe = make_recipe(name="orphan", args="30", env={"JOB_DELAY": "0.5"})  # ~15 s of rows
    proc = popen_cli("launch", recipe, home=rayctl_home)
    try:
        row = wait_for(lambda: _row(rayctl_home, "orphan") if _job_running(
            local_cluster.address, _row(rayctl_home, "orphan")) else None, 120, "the job to run")
        wait_for(lambda: "hello from the job" in open(row["log_path"]).read(), 60, "the first log lines")
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.communicate(timeout=30)
    finally:
        _finish(proc)
    assert "done" not in open(row["log_path"]).read().split("\n")  # the launch died before the end
    res = cli("runs", "--json")
    assert res.code == 0, res
    [now] = [r for r in json.loads(res.out)["runs"] if r["id"] == row["id"]]
    assert now["status"] in ("running", "succeeded")
    assert "hello from the job" in open(row["log_path"]).read()
    wait_for(lambda: ray_job_status(local_cluster.address, row["id"]) == "SUCCEEDED", 120, "the job to end")
    res = cli("runs")
    assert res.code == 0 and "succeeded" in res.out, res
    row = _row(rayctl_home, "orphan")
    assert row["status"] == "succeeded" and row["rows"] == 30 and row["ended_at"]
    log = open(row["log_path"]).read()
    assert "hello from the job" in log and "done" in log.split("\n") and log.count("hello from the job") == 1


@pytest.fixture
def private_cluster_dir():
    import shutil
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="rf-", dir="/tmp"))  # short: Ray's unix socket paths are limited
    yield d / "c"
    for p in processes_with(str(d)):
        p.kill()
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.timeout(360)
def test_a_dead_head_fails_the_run_fast_and_orphans_become_lost(cli, make_recipe, rayctl_home,
                                                                private_cluster_dir, monkeypatch):
    env = {"RAYCTL_LOCAL_CLUSTER_DIR": str(private_cluster_dir)}
    # This test process reads the private head's job status too: with its auth token, not the session head's.
    monkeypatch.setenv("RAYCTL_LOCAL_CLUSTER_DIR", str(private_cluster_dir))
    res = cli("launch", make_recipe(name="detached", args="10000"), "--detach", env=env)
    assert res.code == 0, res
    state = json.loads((private_cluster_dir / "state.json").read_text())
    address = state["address"]
    proc = popen_cli("launch", make_recipe(name="attached", args="10000"), home=rayctl_home, env=env)
    try:
        wait_for(lambda: _job_running(address, _row(rayctl_home, "attached")), 120, "the attached job to run")
        gcs = [p for p in processes_with(state["temp_dir"]) if "gcs_server" in " ".join(p.cmdline())]
        assert gcs, "the private head's gcs_server"
        t0 = time.monotonic()
        for p in gcs:
            p.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        _finish(proc)
    assert proc.returncode == 1, err
    assert f"the Ray cluster at {address} stopped answering (its head process died?)" in err
    assert "Traceback" not in err and "internal error" not in err and "status code 500" not in err
    [error_line] = [ln for ln in err.splitlines() if "rayctl: error:" in ln]
    assert "stopped answering" in error_line
    assert took < 30, f"took {took:.0f} s to notice the dead head"
    row = _row(rayctl_home, "attached")
    assert row["status"] == "failed" and "stopped answering (its head process died?)" in row["reason"]
    assert "\n" not in row["reason"]

    # The whole head goes (a reboot, an OOM kill): the detached run nobody follows becomes `lost`.
    for p in processes_with(state["temp_dir"]):
        try:
            p.kill()
        except psutil.Error:
            pass
    wait_for(lambda: not processes_with(state["temp_dir"]), 30, "the head's processes to exit")
    res = cli("runs", env=env)
    assert res.code == 0, res
    lost = _row(rayctl_home, "detached")
    assert lost["status"] == "lost" and "cluster is gone" in lost["reason"] and lost["ended_at"]
    assert f"{lost['id']} lost: its local Ray cluster is gone" in res.out
    assert cli("down", env=env).code == 0
