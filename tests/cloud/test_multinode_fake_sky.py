"""Multi-node cloud runs against the fake SkyPilot (fake_sky.py; calls bound to SkyPilot 0.14.1's
recorded signatures): a 2-node launch (Ray on every node, the job submitted only once both nodes
are up, 2 nodes billed), a worker that never joins (a clear error, the cluster released or torn
down, the run failed), and a preempted worker node (recovered like any preemption, recorded).
The head runner's node wait is rayctl's real code (`head.wait_for_nodes`), run by the fake on the
simulated head node; its node-count source is tested against a real Ray head in test_head_runner.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap

import pytest

from fake_sky import FakeSky
from rayctl.errors import JobFailed
from rayctl.providers.skypilot import head, remote
from test_launch_fake_sky import kinds, launch, setup

pytestmark = pytest.mark.timeout(60)

TWO_NODES = """\
name: wide-train
kind: train
resources:
  accelerators: A100:8
  nodes: 2
  spot: true
  clouds: [aws, gcp]
workload:
  entrypoint: python train.py
"""

SERVE_TWO = """\
name: wide-serve
kind: serve
resources:
  accelerators: A100:8
  nodes: 2
  clouds: [aws]
teardown: {after: idle, idle_minutes: 30}
workload:
  entrypoint: python app.py
"""


def log_text(ledger, rid) -> str:
    with open(ledger.get(rid)["log_path"]) as f:
        return f.read()


def test_two_node_launch(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger, TWO_NODES)
    fake = FakeSky()
    row = launch(r, p, ledger, rid, fake, clock)
    cfg = fake.tasks[0].config
    assert cfg["num_nodes"] == 2 and cfg["envs"]["RAYCTL_NODES_TIMEOUT_S"] == str(int(head.NODES_TIMEOUT_S))
    assert "~/sky_templates/ray/start_cluster" in cfg["run"]  # on every node: the head on rank 0, workers join it
    token = cfg["secrets"]["RAYCTL_RAY_TOKEN"]
    assert len(token) == 64  # Ray token auth, a fresh token per launch, a SkyPilot secret
    # the job was submitted once, after both nodes' raylets were alive
    assert [s["nodes_alive"] for s in fake.submits] == [2]
    text = log_text(ledger, rid)
    assert text.index("1 of 2 Ray node(s) alive") < text.index("2 of 2 Ray node(s) alive") < text.index("submitted")
    assert token not in text
    assert row["status"] == "succeeded" and row["nodes"] == 2 and row["metrics"]["nodes_alive"] == 2
    seg, = ledger.segments(rid)
    assert seg["nodes"] == 2
    per_node = seg["hourly_usd_per_node"]
    assert per_node > 0 and row["hourly_usd"] == pytest.approx(2 * per_node)
    hours = clock.slept / 3600.0  # the fake clock advances only while rayctl waits between polls
    assert ledger.cost_of(rid) == pytest.approx(2 * per_node * hours, rel=1e-3)
    assert fake.clusters == {}


def test_worker_never_joins_fails_clearly_and_releases_the_cluster(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger, TWO_NODES)
    fake = FakeSky(worker_join_s=None)
    with pytest.raises(JobFailed) as e:
        launch(r, p, ledger, rid, fake, clock)
    assert "only 1 of 2 nodes joined the Ray cluster within 600 s" in str(e.value)
    assert fake.submits == []  # nothing was submitted to a half-made cluster
    row = ledger.get(rid)
    assert row["status"] == "failed" and "only 1 of 2 nodes joined" in row["reason"]
    assert row["metrics"]["nodes_wanted"] == 2 and row["metrics"]["nodes_alive"] == 1
    assert "job_failed" in kinds(ledger, rid) and "teardown" in kinds(ledger, rid)
    assert fake.clusters == {}


def test_worker_never_joins_on_a_kept_cluster_is_torn_down(write_recipe, mini_catalog, ledger, clock):
    """Cluster mode (serve, teardown.after: idle): rayctl itself deletes the cluster (`sky.down`)."""
    r, p, rid = setup(write_recipe, mini_catalog, ledger, SERVE_TWO)
    fake = FakeSky(worker_join_s=None)
    with pytest.raises(JobFailed, match="only 1 of 2 nodes joined"):
        launch(r, p, ledger, rid, fake, clock)
    assert any(c[0] == "down" for c in fake.calls)  # rayctl deleted it
    row = ledger.get(rid)
    assert row["status"] == "failed" and "only 1 of 2 nodes joined" in row["reason"]
    assert "teardown" in kinds(ledger, rid) and fake.clusters == {}


def test_preempted_worker_node_is_recovered_and_recorded(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger, TWO_NODES)
    fake = FakeSky(preempt_worker_at_polls={2}, run_polls=4)
    row = launch(r, p, ledger, rid, fake, clock)
    assert row["status"] == "succeeded"
    evs = kinds(ledger, rid)
    assert evs.count("preemption") == 1 and evs.count("recovery") == 1
    assert evs.index("preemption") < evs.index("recovery")
    segs = ledger.segments(rid)
    assert len(segs) == 2 and all(s["nodes"] == 2 for s in segs)
    assert segs[0]["region"] != segs[1]["region"]  # EAGER_NEXT_REGION: the whole cluster came back elsewhere
    # the job was submitted again on the new cluster, once both of its nodes were up
    assert [s["nodes_alive"] for s in fake.submits] == [2, 2]
    assert fake.submits[0]["infra"] != fake.submits[1]["infra"]
    assert "Cluster is preempted or failed" in log_text(ledger, rid)
    assert fake.clusters == {}


@pytest.mark.parametrize("rank,token", [("0", "t0k3n"), ("1", "t0k3n"), ("1", "")])
def test_run_script_starts_ray_on_every_node(tmp_path, rank, token):
    """The task's `run`, executed by bash with SkyPilot's env: start_cluster on every node (it starts the
    head on rank 0 and joins the others to the first of SKYPILOT_NODE_IPS); the head runner only on rank 0,
    even when start_cluster's own wait for the workers gave up; Ray token auth from the task secret."""
    home = tmp_path / "home"
    (home / "sky_templates" / "ray").mkdir(parents=True)
    venv_bin = home / ".rayctl" / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    calls = tmp_path / "calls"

    def script(path, body):
        path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    script(home / "sky_templates" / "ray" / "start_cluster",
           f'echo "start_cluster rank=$SKYPILOT_NODE_RANK auth=$RAY_AUTH_MODE token=$RAY_AUTH_TOKEN" >> {calls}\n'
           'exit 1\n' if rank == "0" else
           f'echo "start_cluster rank=$SKYPILOT_NODE_RANK auth=$RAY_AUTH_MODE token=$RAY_AUTH_TOKEN" >> {calls}\n')
    script(venv_bin / "python", f'echo "python $* auth=$RAY_AUTH_MODE" >> {calls}\n')
    (venv_bin / "activate").write_text(f'export PATH={venv_bin}:$PATH\n')
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "SKYPILOT_NODE_RANK": rank,
           "SKYPILOT_NUM_NODES": "2", "SKYPILOT_NODE_IPS": "10.0.0.1\n10.0.0.2", remote.RAY_TOKEN_ENV: token}
    p = subprocess.run(["bash", "-c", remote.run_script()], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    got = calls.read_text().splitlines()
    auth = "token" if token else "disabled"
    assert got[0] == f"start_cluster rank={rank} auth={auth} token={token}"
    if rank == "0":
        assert "start_cluster exited 1 on the head node" in p.stdout
        assert got[1:] == [f"python -m rayctl.providers.skypilot.head auth={auth}"]
    else:
        assert got[1:] == []  # a worker only joins; the job is submitted from the head
