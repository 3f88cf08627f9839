"""The local cluster's lifecycle on private clusters (not the session's shared one):
`rayctl down` stops exactly its own processes, and a Ctrl-C while the head starts
leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from launch_helpers import ledger_rows, popen_cli, processes_with, wait_for
from tests import proctrack

pytestmark = [pytest.mark.slow]


def cluster_processes(cdir: Path) -> list:
    """Live processes of the head kept in `cdir`: every one of them inherits
    RAYCTL_LOCAL_CLUSTER_DIR=cdir from the launch that started it (this finds
    `ray.util.client.server` too, whose command line names no directory), plus their
    descendants and session (Ray workers may blank their environment)."""
    return proctrack.find("RAYCTL_LOCAL_CLUSTER_DIR", str(cdir))


@pytest.fixture
def private_cluster_dir():
    d = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: Ray's unix socket paths are limited
    cdir = d / "c"
    yield cdir
    # Safety net: the tests stop what they start; a head left in this dir is stopped the way
    # `rayctl down` does it, and anything else of it goes too.
    if (cdir / "state.json").exists():
        from rayctl.providers import local

        saved = os.environ.get("RAYCTL_LOCAL_CLUSTER_DIR")
        os.environ["RAYCTL_LOCAL_CLUSTER_DIR"] = str(cdir)
        try:
            local.stop_cluster()
        finally:
            if saved is None:
                os.environ.pop("RAYCTL_LOCAL_CLUSTER_DIR", None)
            else:
                os.environ["RAYCTL_LOCAL_CLUSTER_DIR"] = saved
    proctrack.kill_all(cluster_processes(cdir) + processes_with(str(d)))
    shutil.rmtree(d, ignore_errors=True)


# A loaded 2-core machine can take minutes to start a head (two launches race for it here).
@pytest.mark.timeout(480)
def test_down_stops_only_its_own_cluster_and_its_runs(cli, make_recipe, local_cluster, rayctl_home,
                                                      private_cluster_dir):
    from rayctl.providers import local

    env = {"RAYCTL_LOCAL_CLUSTER_DIR": str(private_cluster_dir)}
    shared_before = {p.pid for p in local.processes()}
    # Two launches at once on a machine with no head yet: the lock lets exactly one start it.
    a = popen_cli("launch", make_recipe(name="mine", args="10000"), "--detach", home=rayctl_home, env=env)
    b = popen_cli("launch", make_recipe(name="again"), home=rayctl_home, env=env)
    try:
        for p in (a, b):
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    assert (private_cluster_dir / "head.log").read_text().count("ray.scripts.scripts start") == 1
    state = json.loads((private_cluster_dir / "state.json").read_text())
    assert state["address"] != local_cluster.address and state["node_ip"] == "127.0.0.2"
    assert Path(state["temp_dir"]).is_dir()
    rows = ledger_rows(rayctl_home)
    assert {r["ray_address"] for r in rows} == {state["address"]}
    row = [r for r in rows if r["recipe"] == "mine"][0]
    assert {r["status"] for r in rows} == {"running", "succeeded"}

    # Later launches reuse the head.
    res = cli("launch", make_recipe(name="again"), env=env)
    assert res.code == 0, res
    assert "local Ray cluster reused at " + state["address"] in res.err

    own = processes_with(state["temp_dir"])
    assert own, "the private head's processes name its temp dir"
    res = cli("down", env=env)
    assert res.code == 0, res
    assert f"stopped the local Ray cluster at {state['address']}" in res.out and row["id"] in res.out
    wait_for(lambda: not processes_with(state["temp_dir"]) and not cluster_processes(private_cluster_dir), 20,
             "the private head's processes (ray.util.client.server included) to exit")
    assert not (private_cluster_dir / "state.json").exists()
    assert not Path(state["temp_dir"]).exists()
    mine = [r for r in ledger_rows(rayctl_home) if r["recipe"] == "mine"][0]
    assert mine["status"] == "stopped" and "rayctl down" in mine["reason"]

    # The session's shared cluster (another "user" of this machine) is untouched.
    assert local.healthy(local_cluster)
    assert shared_before <= {p.pid for p in local.processes()} | {p for p in shared_before if not _alive(p)}

    res = cli("down", env=env)
    assert res.code == 0 and "no local Ray cluster is running" in res.out


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.timeout(240)
def test_ctrl_c_while_the_head_starts_leaves_nothing(make_recipe, rayctl_home, private_cluster_dir):
    env = {"RAYCTL_LOCAL_CLUSTER_DIR": str(private_cluster_dir)}
    proc = popen_cli("launch", make_recipe(name="early"), home=rayctl_home, env=env)
    try:
        head_log = private_cluster_dir / "head.log"
        wait_for(lambda: head_log.exists() and "ray.scripts.scripts start" in head_log.read_text(), 60,
                 "`ray start` to begin")
        time.sleep(2.0)  # mid-start: some daemons are up, the head is not ready yet
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    [row] = ledger_rows(rayctl_home)
    assert row["status"] == "interrupted" and row["ray_job_id"] is None
    assert not (private_cluster_dir / "state.json").exists()
    wait_for(lambda: not processes_with(str(private_cluster_dir)) and not cluster_processes(private_cluster_dir), 20,
             "no process of the half-started head")
