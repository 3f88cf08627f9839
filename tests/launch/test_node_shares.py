"""How a multi-node local cluster is laid out, and the train defaults that follow `nodes` (no Ray)."""

from rayctl import recipe as R
from rayctl.providers.local import nodes
from rayctl.workloads import train


def test_cpus_and_gpus_are_split_over_the_nodes_at_least_one_cpu_each():
    assert nodes.shares(2, 2) == [1, 1]
    assert nodes.shares(5, 2) == [3, 2]
    assert nodes.shares(1, 3) == [1, 1, 1]  # never a node without a CPU
    assert nodes.gpu_shares(["0"], 2) == [["0"], []]
    assert nodes.gpu_shares(["0", "1", "2", "3"], 2) == [["0", "1"], ["2", "3"]]
    assert [nodes.worker_ip(i) for i in range(3)] == ["127.0.0.3", "127.0.0.4", "127.0.0.5"]


def test_train_defaults_follow_the_nodes(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYCTL_HOME", str(tmp_path / "home"))

    def settings(text):
        p = tmp_path / "r.yaml"
        p.write_text(text)
        return train.settings(R.load(p))

    one = settings("name: t\nkind: train\n")
    assert (one["workers"], one["max_failures"]) == (2, 0)
    two = settings("name: t\nkind: train\nresources: {nodes: 2}\n")
    assert (two["workers"], two["max_failures"]) == (2, 1)
    gpus = settings("name: t\nkind: train\nresources: {nodes: 3, accelerators: L4:2}\n")
    assert gpus["workers"] == 6
    mine = settings("name: t\nkind: train\nresources: {nodes: 2}\nworkload: {workers: 1, max_failures: 0}\n")
    assert (mine["workers"], mine["max_failures"]) == (1, 0)
