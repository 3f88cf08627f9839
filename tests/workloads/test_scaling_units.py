"""How the built-ins size themselves to a cluster's nodes (no Ray needed)."""

from rayctl.workloads import common, serve
from rayctl.workloads.batch_engines import auto_concurrency, replicas


def test_batch_infer_auto_concurrency_is_one_replica_per_gpu_or_per_node():
    wl = {"engine": "transformers", "num_gpus": "auto"}
    assert auto_concurrency(wl, total_gpu=0, nodes=2) == 2  # CPU cluster: one per node
    assert auto_concurrency(wl, total_gpu=4, nodes=2) == 4  # one per GPU across all nodes
    assert auto_concurrency({**wl, "num_gpus": 0}, total_gpu=4, nodes=2) == 2
    assert auto_concurrency({**wl, "num_gpus": 2}, total_gpu=4, nodes=2) == 2
    from rayctl.workloads import llm_engines

    vllm = {"engine": "vllm", "engine_kwargs": {"tensor_parallel_size": 2}, "concurrency": None}
    assert llm_engines.concurrency(vllm, total_gpu=8) == 4  # one engine per tensor-parallel group
    assert replicas("auto") == (1, 1) and replicas([1, 3]) == (1, 3)  # job spec: at least one replica


def test_serve_auto_replicas_and_nodes_used():
    assert serve.auto_replicas("auto", nodes=3, total_gpu=0) == 3
    assert serve.auto_replicas("auto", nodes=2, total_gpu=4) == 4
    assert serve.auto_replicas(0, nodes=2, total_gpu=4) == 2
    assert common.nodes_used(["a", "b", "a", None, ""]) == 2
