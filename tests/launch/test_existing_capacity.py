"""Existing clusters (`--target http://HEAD:8265`): before anything is submitted, rayctl checks over
HTTP (Ray's state API, `/api/v0/nodes`) that the cluster has the nodes and the accelerators per node
the recipe asks for, and refuses with exit 2 and one paragraph saying what it asks and what it found.

Two real HTTP servers: a small one on 127.0.0.1 that answers like a 2-node GPU cluster's dashboard
(Ray 2.60's response layout: `rest_response` around `ListApiResponse` of `NodeState` rows), and the
session's real local Ray head (1 node, no GPU).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rayctl.recipe.accelerators import parse_spec
from rayctl.runs import capacity
from tests.conftest import assert_no_traceback


def _node(i: int, gpus: int, acc: str | None, *, alive=True, head=False) -> dict:
    res = {"CPU": 16.0, "memory": 6.4e10, "object_store_memory": 2.0e10, f"node:10.0.0.{i}": 1.0}
    if head:
        res["node:__internal_head__"] = 1.0
    if gpus:
        res["GPU"] = float(gpus)
    if acc:
        res[f"accelerator_type:{acc}"] = 1.0
    return {"node_id": f"{i:056x}", "node_ip": f"10.0.0.{i}", "is_head_node": head,
            "state": "ALIVE" if alive else "DEAD", "state_message": None if alive else "node died",
            "node_name": f"10.0.0.{i}", "resources_total": res, "labels": {"ray.io/node-id": f"{i:056x}"}}


class FakeDashboard:
    """A Ray dashboard's /api/version and /api/v0/nodes, served over real HTTP on 127.0.0.1."""

    def __init__(self, nodes: list[dict]):
        self.nodes = nodes
        self.seen: list[str] = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                fake.seen.append(self.path)
                if self.path == "/api/version":
                    doc = {"version": "4", "ray_version": "2.60.0", "ray_commit": "0" * 40}
                elif self.path.startswith("/api/v0/nodes"):
                    rows = fake.nodes
                    doc = {"result": True, "msg": "", "data": {"result": {
                        "total": len(rows), "num_after_truncation": len(rows), "num_filtered": len(rows),
                        "result": rows, "partial_failure_warning": "", "warnings": None}}}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def gpu_cluster():
    """Head with 8 A100, a worker with 8 A100, a worker with 4 A100, and a dead 8 x A100 node."""
    d = FakeDashboard([_node(1, 8, "A100", head=True), _node(2, 8, "A100"), _node(3, 4, "A100"),
                       _node(4, 8, "A100", alive=False)])
    yield d
    d.close()


def test_accept_and_refuse_against_a_multinode_gpu_dashboard(gpu_cluster):
    url = gpu_cluster.url
    nodes = capacity.cluster_nodes(url)
    assert [n["ip"] for n in nodes] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # the dead node does not count
    a100_8, a100_80gb_4 = parse_spec("A100:8"), parse_spec("A100-80GB:4")
    assert capacity.check_nodes(url, 2, (a100_8,)) == []          # 2 nodes with 8 x A100 each
    assert capacity.check_nodes(url, 3, (a100_80gb_4,)) == []     # the A100 family; Ray reports no memory size
    assert capacity.check_nodes(url, 3, (parse_spec("H100:8"), a100_80gb_4)) == []  # alternatives
    assert capacity.check_nodes(url, 3) == []
    with pytest.raises(capacity.InputError) as e:
        capacity.check_nodes(url, 3, (a100_8,), asks="r.yaml:4: recipe 'x'")
    msg = str(e.value)
    assert "r.yaml:4: recipe 'x' asks for 3 node(s) with 8 x A100 each" in msg
    assert "3 alive node(s): 2 with 16 CPU(s) and 8 GPU(s) (A100), 1 with 16 CPU(s) and 4 GPU(s) (A100)" in msg
    assert "only 2 of them have the accelerators" in msg and "\n" not in msg
    with pytest.raises(capacity.InputError, match=r"asks for 4 node\(s\) \(resources.nodes: 4\).*has 3 alive"):
        capacity.check_nodes(url, 4)
    with pytest.raises(capacity.InputError, match="8 x H100 each"):
        capacity.check_nodes(url, 1, (parse_spec("H100:8"),))


def test_launch_refuses_before_submitting(cli, tmp_path, gpu_cluster):
    p = tmp_path / "r.yaml"
    p.write_text("name: big\nkind: train\nresources:\n  accelerators: A100:8\n  nodes: 3\n"
                 "workload:\n  storage: s3://bucket/ckpt\n")
    r = cli("launch", p, "--target", gpu_cluster.url)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"{p}:5: recipe 'big' asks for 3 node(s) with 8 x A100 each" in r.err, r.err
    assert not any(s.startswith("/api/jobs") for s in gpu_cluster.seen)  # nothing was submitted
    st = cli("runs", "--json")
    assert st.code == 0, st
    runs = json.loads(st.out)["runs"]
    assert runs[0]["status"] == "failed" and "asks for 3 node(s)" in runs[0]["reason"]


def test_unreadable_node_list_is_a_warning_not_a_refusal(gpu_cluster):
    gpu_cluster.nodes = "not a list"  # a dashboard that answers something else there
    ws = capacity.check_nodes(gpu_cluster.url, 2, (parse_spec("A100:8"),))
    assert ws and "could not list the nodes" in ws[0]


@pytest.mark.slow
def test_real_local_head_is_one_node_without_gpu(cli, tmp_path, local_cluster):
    """The session's real Ray head (token auth on): its state API read the same way; a recipe asking for
    2 nodes, or for a GPU, is refused with exit 2 before anything is submitted."""
    nodes = capacity.cluster_nodes(local_cluster.address)
    assert nodes is not None and len(nodes) == 1 and nodes[0]["head"], nodes
    assert nodes[0]["resources"]["CPU"] >= 1 and "GPU" not in nodes[0]["resources"]
    for res, needle in (("nodes: 2", "asks for 2 node(s) (resources.nodes: 2)"),
                        ("accelerators: T4", "asks for 1 node(s) with 1 x T4 each")):
        p = tmp_path / "r.yaml"
        p.write_text(f"name: two\nkind: train\nresources:\n  {res}\nworkload:\n  storage: s3://b/c\n  epochs: 1\n")
        r = cli("launch", p, "--target", local_cluster.address)
        assert r.code == 2, r
        assert_no_traceback(r)
        assert needle in r.err and "has 1 alive node(s)" in r.err and "no GPU" in r.err, r.err
