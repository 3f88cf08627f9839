"""The multi-node local cluster (`resources.nodes: N` on the local target): a head on 127.0.0.2
and worker raylets on 127.0.0.3, ..., 1 CPU each here; `rayctl down` stops exactly its
nodes; a 2-node `train` run survives a killed worker node (rayctl restarts it, Ray Train
resumes from the latest checkpoint, the ledger records one recovery)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from launch_helpers import ledger_rows, wait_for

pytestmark = [pytest.mark.slow]


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.timeout(420)
def test_two_node_cluster_grows_without_a_restart_and_down_stops_only_it(cli, rayctl_home):
    from rayctl.providers import local

    # Another "user" of this machine: a process carrying another local cluster's ownership token.
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             env={**os.environ, local.TOKEN_ENV: "someone-else"})
    try:
        head = local.ensure_cluster(nodes=1, cpus=1, home=rayctl_home)
        assert head.workers == [] and head.nodes == 1
        c = local.ensure_cluster(nodes=2, cpus=1, home=rayctl_home)  # grows: the head keeps running
        assert c.reused and c.pid == head.pid and c.session_name == head.session_name
        assert c.nodes == 2 and c.workers[0]["ip"] == "127.0.0.3" and c.workers[0]["cpus"] == 1
        nodes = local.alive_nodes(c)
        assert sorted(n["node_ip"] for n in nodes) == ["127.0.0.2", "127.0.0.3"]
        assert all(n["resources_total"]["CPU"] == 1 for n in nodes)
        state = json.loads((local.cluster_dir(rayctl_home) / "state.json").read_text())
        assert state["workers"][0]["raylet_pid"] and _alive(state["workers"][0]["raylet_pid"])
        # Asking for fewer nodes reuses it as it is.
        again = local.ensure_cluster(nodes=1, home=rayctl_home)
        assert again.reused and again.workers == c.workers

        own = [p.pid for p in local.processes(rayctl_home)]
        assert state["workers"][0]["raylet_pid"] in own and len(own) >= 6
        res = cli("down", env={"RAYCTL_LOCAL_CLUSTER_DIR": str(local.cluster_dir(rayctl_home))})
        assert res.code == 0, res
        wait_for(lambda: not any(_alive(p) for p in own), 20, "the 2-node cluster's processes to exit")
        assert _alive(decoy.pid)
        assert not (local.cluster_dir(rayctl_home) / "state.json").exists()
        assert not os.path.exists(state["workers"][0]["temp_dir"]) and not os.path.exists(state["temp_dir"])
    finally:
        decoy.kill()
        decoy.wait()


TRAIN = """name: mn-train
kind: train
target: local
resources:
  nodes: 2
  cpus: 1
workload:
  epochs: {epochs}
  samples: 1000
  batch_size: 32
  storage: ckpt
  keep_checkpoints: 2
"""


def _checkpointed_epochs(folder) -> list[int]:
    import torch

    out = []
    for f in folder.glob("**/checkpoint_*/state.pt"):
        try:
            out.append(int(torch.load(f, map_location="cpu", weights_only=True)["epoch"]))
        except Exception:  # noqa: BLE001 - one being written or deleted right now
            pass
    return out


@pytest.mark.timeout(900)  # ~90 s on an idle machine; a loaded 2-core one takes minutes to start Ray
def test_train_on_two_nodes_survives_a_killed_worker_node(use_local_cluster_2n, rayctl_home, tmp_path):
    from rayctl.providers import local

    cluster = use_local_cluster_2n
    epochs = 30
    recipe = tmp_path / "mn-train.yaml"
    recipe.write_text(TRAIN.format(epochs=epochs))
    out_path = tmp_path / "launch.out"
    env = dict(os.environ, RAYCTL_HOME=str(rayctl_home), COLUMNS="200")  # $RAYCTL_LOCAL_CLUSTER_DIR: the 2-node one
    with open(out_path, "w") as out_file:  # a file, not a pipe: Ray Train's chatter never blocks the launch
        proc = subprocess.Popen([sys.executable, "-m", "rayctl", "launch", str(recipe)], stdout=out_file,
                                stderr=subprocess.STDOUT, env=env)
    try:
        # Kill once Ray Train has *committed* a checkpoint. A folder on disk is not enough: rank 0
        # writes it at once, the controller registers it at its next poll (every 2 s), and a node
        # killed in between restarts the run from scratch. With keep_checkpoints 2, epoch 1's folder
        # is deleted only when the controller registers epoch 3, so its absence proves a commit.
        def committed() -> bool:
            eps = _checkpointed_epochs(tmp_path / "ckpt")
            return bool(eps) and min(eps) >= 2

        wait_for(lambda: proc.poll() is not None or committed(), 240,
                 "a committed checkpoint of the 2-node train run", every=0.25)
        assert proc.poll() is None, "the run ended before a node could be killed"
        victim = local.read_state().workers[0]
        on_disk = set(_checkpointed_epochs(tmp_path / "ckpt"))
        os.kill(victim["raylet_pid"], signal.SIGKILL)  # the worker node's raylet: the node is lost
        proc.wait(timeout=360)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = out_path.read_text()
    assert proc.returncode == 0, out[-4000:]
    row = [r for r in ledger_rows(rayctl_home) if r["recipe"] == "mn-train"][0]
    m = row["metrics"]
    assert row["status"] == "succeeded" and row["nodes"] == 2
    assert m["epochs"] == epochs and m["workers"] == 2 and m["nodes_used"] == 2, m
    # Resumed from a checkpoint committed before the kill (at least the one that made the controller
    # delete epoch 1's folder), and trained only the epochs after it.
    assert m["resumed_from"] is not None and min(on_disk) <= m["resumed_from"] < epochs, (m, on_disk)
    assert m["epochs_run"] == epochs - m["resumed_from"], (m, on_disk)
    assert "resuming from the checkpoint of epoch" in out, out[-4000:]
    assert "local worker node 127.0.0.3 was lost; rayctl restarted it" in out
    # rayctl brought the node back (a new raylet at the same IP) and the ledger has one recovery.
    now = local.read_state().workers[0]
    assert now["ip"] == victim["ip"] and now["raylet_pid"] != victim["raylet_pid"]
    assert sorted(n["node_ip"] for n in local.alive_nodes(cluster)) == ["127.0.0.2", "127.0.0.3"]
    from rayctl.ledger import Ledger

    with Ledger(rayctl_home / "ledger.db") as led:
        assert [e["kind"] for e in led.events(row["id"], kind="recovery")] == ["recovery"]
        assert len(led.segments(row["id"])) == 2 and all(s["nodes"] == 2 for s in led.segments(row["id"]))


@pytest.mark.timeout(300)
def test_a_detached_runs_lost_worker_node_is_restarted_by_status(use_local_cluster_2n, local_cluster_2n,
                                                                   make_recipe, cli, rayctl_home):
    """Nobody follows a detached run: `rayctl status RUN` restarts its cluster's dead worker node
    and records the recovery, as the attached launch's node watch does."""
    from rayctl.ledger import Ledger
    from rayctl.providers import local

    env = {"RAYCTL_LOCAL_CLUSTER_DIR": local_cluster_2n.cluster_dir}
    recipe = make_recipe(name="mn-detached", args="10000", extra="resources:\n  nodes: 2\n  cpus: 1\n")
    res = cli("launch", recipe, "--detach", env=env)
    assert res.code == 0, res
    [row] = [r for r in ledger_rows(rayctl_home) if r["recipe"] == "mn-detached"]
    try:
        victim = local.read_state().workers[0]
        os.kill(victim["raylet_pid"], signal.SIGKILL)

        def restarted():
            res = cli("status", row["id"], "--json", env=env)
            assert res.code == 0, res
            now = local.read_state().workers[0]
            return now["raylet_pid"] != victim["raylet_pid"] and json.loads(res.out)["status"] == "running"

        wait_for(restarted, 120, "rayctl status to restart the dead worker node", every=2)
        wait_for(lambda: sorted(n["node_ip"] for n in (local.alive_nodes(local.read_state()) or []))
                 == ["127.0.0.2", "127.0.0.3"], 60, "the restarted worker node to join")
        with Ledger(rayctl_home / "ledger.db") as led:
            events = led.events(row["id"], kind="recovery")
            assert len(events) == 1 and events[0]["detail"]["node"] == "127.0.0.3", events
            assert len(led.segments(row["id"])) == 2
    finally:
        assert cli("stop", row["id"], env=env).code == 0
