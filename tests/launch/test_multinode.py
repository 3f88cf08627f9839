"""The multi-node local cluster (`resources.nodes: N` on the local target): a head on 127.0.0.2
and worker raylets on 127.0.0.3, ..., 1 CPU each here; `rayctl down` stops exactly its
nodes; a 2-node `train` run survives a killed worker node (rayctl restarts it, Ray Train
resumes from the latest checkpoint, the ledger records one recovery)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


import pytest

from launch_helpers import wait_for

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
    finally:
        decoy.kill()
        decoy.wait()
