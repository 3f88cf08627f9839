"""serve `engine: auto | transformers | vllm` without a GPU: what rayctl hands Ray Serve LLM.

`ray.serve.llm` raises ImportError unless vLLM or SGLang is installed (neither is here), but
the class it re-exports, `ray.llm._internal.serve.core.configs.llm_config.LLMConfig`, imports
without them: the config rayctl builds is constructed and validated by Ray's own class.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap

import pytest

from rayctl.workloads import common, serve, serve_llm
from tests.conftest import assert_no_traceback

HAS_ENGINE = any(importlib.util.find_spec(m) is not None for m in ("vllm", "sglang"))
NEEDS_ENGINE = pytest.mark.skipif(not HAS_ENGINE, reason="ray.serve.llm imports only with vLLM or SGLang installed "
                                                         "(rayctl's gpu extra); neither is installed here")


def _wl(**kw) -> dict:
    wl = common.with_defaults(kw, serve.FIELDS)
    wl.setdefault("app_name", "chat")
    return wl


def _ray_llm_config():
    from ray.llm._internal.serve.core.configs.llm_config import LLMConfig

    return LLMConfig


def test_llm_config_rayctl_builds_is_valid_for_ray(wl_env):
    LLMConfig = _ray_llm_config()
    wl = _wl(model="Qwen/Qwen2.5-0.5B-Instruct", engine="vllm", replicas=2, max_ongoing_requests=64,
             engine_kwargs={"tensor_parallel_size": 2, "max_model_len": 4096})
    c = LLMConfig(**serve_llm.llm_config_kwargs(wl, "H100"))
    assert c.model_id == "Qwen/Qwen2.5-0.5B-Instruct"
    assert c.model_loading_config.model_source == "Qwen/Qwen2.5-0.5B-Instruct"
    assert c.engine_kwargs == {"tensor_parallel_size": 2, "max_model_len": 4096}  # passed through as given
    assert c.accelerator_type == "H100" and c.llm_engine == "vLLM"
    assert c.deployment_config == {"num_replicas": 2, "max_ongoing_requests": 64}
    assert serve_llm.gpus_per_replica(wl) == 2

    # autoscaling replaces replicas; Ray validates it against its DeploymentConfig
    auto = _wl(engine="vllm", autoscaling={"min_replicas": 0, "max_replicas": 4, "target_ongoing_requests": 16})
    c = LLMConfig(**serve_llm.llm_config_kwargs(auto, None))
    assert c.deployment_config == {"autoscaling_config": {"min_replicas": 0, "max_replicas": 4,
                                                          "target_ongoing_requests": 16}}
    assert c.accelerator_type is None and c.model_id == common.DEMO_MODEL
    assert c.model_loading_config.model_source.endswith("rayctl-demo-gpt2-v2")  # the demo checkpoint folder


def test_accelerator_type_is_the_plans_as_the_cluster_labels_it():
    from ray.llm._internal.serve.core.configs.accelerators import AcceleratorType

    known = [t.value for t in AcceleratorType]
    pick = serve_llm.accelerator_type
    assert pick(["H100:8"], {"GPU": 8, "accelerator_type:H100": 1}, known) == "H100"
    # SkyPilot's A100-80GB is Ray's A100-80G
    assert pick(["A100-80GB:1"], {"accelerator_type:A100-80G": 1}, known) == "A100-80G"
    # the plan chose one of several alternatives: the one the nodes carry
    assert pick(["L4:1", "A10G:1"], {"accelerator_type:A10G": 1}, known) == "A10G"
    # no recipe accelerators (e.g. an existing cluster): the cluster's one label
    assert pick([], {"accelerator_type:L40S": 1}, known) == "L40S"
    # no label, or a name Ray Serve LLM does not know: no pinning (never a replica that cannot schedule)
    assert pick(["H100:1"], {"GPU": 1}, known) is None
    assert pick([], {"accelerator_type:Weird-9": 1}, known) is None


def test_auto_resolution_and_a_clear_reason_without_vllm_or_gpu(tmp_path, monkeypatch, capsys):
    assert importlib.util.find_spec("vllm") is None, "this test describes a machine without vLLM"
    assert serve_llm.pick(_wl(engine="auto"), total_gpu=4) == "transformers"
    assert serve_llm.pick(_wl(engine="auto"), total_gpu=0) == "transformers"
    assert "engine auto -> transformers (cluster GPUs: 4, vllm not installed)" in capsys.readouterr().out
    with pytest.raises(common.WorkloadError, match="engine vllm needs the vllm package on the cluster"):
        serve_llm.pick(_wl(engine="vllm"), total_gpu=1)
    # a cluster that has vLLM (an importable `vllm` package on the path)
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert serve_llm.pick(_wl(engine="auto"), total_gpu=1) == "vllm"
    assert serve_llm.pick(_wl(engine="auto"), total_gpu=0) == "transformers"
    assert serve_llm.pick(_wl(engine="transformers"), total_gpu=8) == "transformers"
    with pytest.raises(common.WorkloadError, match="engine vllm runs on GPUs and this cluster has none"):
        serve_llm.pick(_wl(engine="vllm"), total_gpu=0)


def test_engine_vllm_on_the_local_target_without_vllm_is_exit_2_before_anything_starts(cli, tmp_path):
    p = tmp_path / "chat.yaml"
    p.write_text(textwrap.dedent("""\
        name: chat
        kind: serve
        target: local
        workload:
          engine: vllm
          model: rayctl-demo
    """))
    r = cli("launch", p)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"{p}:5:11: field 'workload.engine':" in r.err, r.err
    assert "engine vllm needs vLLM, and it is not installed" in r.err and "nothing was started" in r.err
    from rayctl.ledger import Ledger

    with Ledger() as led:  # the cli fixture's RAYCTL_HOME
        assert led.runs() == []


def test_job_spec_of_engine_vllm_asks_for_its_gpus(wl_env, tmp_path):
    from rayctl import recipe as R
    from rayctl import workloads

    p = tmp_path / "chat.yaml"
    p.write_text("name: chat\nkind: serve\ntarget: cloud\nresources: {accelerators: L4:2}\n"
                 "workload: {engine: vllm, model: Qwen/Qwen2.5-0.5B-Instruct, replicas: 3, "
                 "engine_kwargs: {tensor_parallel_size: 2}}\n")
    spec = workloads.job_spec(R.load(p), "chat-1")  # not the local target: the cluster checks for vLLM itself
    assert spec.needs_gpus == 6 and spec.detached
    wl = json.loads(spec.runtime_env["env_vars"][common.ENV])["workload"]
    assert wl["engine"] == "vllm" and wl["engine_kwargs"] == {"tensor_parallel_size": 2}


def test_usage_is_counted_once_per_request_from_every_answer_shape():
    class U:
        prompt_tokens, completion_tokens = 7, 3

    class Resp:
        usage = U()

    assert serve_llm.usage_of(Resp()) == (7, 3)
    assert serve_llm.usage_of({"usage": {"prompt_tokens": 2, "completion_tokens": 5}}) == (2, 5)
    sse = 'data: {"choices": []}\n\ndata: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 9}}\n\n'
    assert serve_llm.usage_of(sse) == (4, 9)
    assert serve_llm.usage_of(["data: {}\n\n", sse.encode()]) == (4, 9)  # a batch of streamed chunks
    assert serve_llm.usage_of("data: [DONE]\n\n") is None and serve_llm.usage_of({"choices": []}) is None

    t = serve_llm.Tally()  # a stream with continuous usage: cumulative totals, counted as deltas
    deltas = [t.add(u) for u in [(4, 1), (4, 2), (4, 2), (4, 6)]]
    assert deltas == [(1, 4, 1), (0, 0, 1), None, (0, 0, 4)]

    class ErrorResponse:
        error = {"message": "bad"}

    assert serve_llm.is_error(ErrorResponse()) and serve_llm.is_error([ErrorResponse()])
    assert not serve_llm.is_error(Resp())


def test_streamed_requests_ask_for_usage_unless_they_said():
    from typing import Optional

    from pydantic import BaseModel

    class StreamOptions(BaseModel):
        include_usage: Optional[bool] = True

    class Req(BaseModel):
        stream: bool = False
        stream_options: Optional[StreamOptions] = None

    assert serve_llm.ask_usage(Req(stream=True)).stream_options.include_usage is True
    assert serve_llm.ask_usage(Req()).stream_options is None  # not streamed: usage is in the answer
    said = Req(stream=True, stream_options=StreamOptions(include_usage=False))
    assert serve_llm.ask_usage(said).stream_options.include_usage is False


def test_counter_app_sits_under_the_apps_prefix():
    assert serve_llm.counter_route("/") == "/-/rayctl"
    assert serve_llm.counter_route("/chat") == "/chat/-/rayctl"
    assert serve_llm.counter_app_name("chat") == "chat--rayctl"


def test_ray_serve_llm_needs_an_engine_and_rayctl_imports_it_only_on_the_gpu_path(wl_env):
    """Building the transformers spec never imports ray.serve.llm (or ray.llm)."""
    import subprocess

    code = ("import sys, rayctl.recipe as r, rayctl.workloads as w\n"
            f"rec = r.load({str(wl_env / 'x.yaml')!r})\n"
            "w.job_spec(rec, 'run-1')\n"
            "print(sorted(m for m in sys.modules if m.startswith(('ray.llm', 'ray.serve.llm', 'vllm'))))\n")
    (wl_env / "x.yaml").write_text("name: x\nkind: serve\ntarget: local\nworkload: {engine: auto}\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    if not HAS_ENGINE:
        with pytest.raises(ImportError, match="Neither vLLM nor SGLang is installed"):
            import ray.serve.llm  # noqa: F401


@NEEDS_ENGINE
def test_openai_app_builds_with_the_counting_ingress(wl_env):
    from ray.serve.llm import LLMConfig, build_openai_app

    wl = _wl(engine="vllm", model="Qwen/Qwen2.5-0.5B-Instruct", engine_kwargs={"load_format": "dummy"})
    cfg = LLMConfig(**serve_llm.llm_config_kwargs(wl, None))
    app = build_openai_app(serve_llm.serving_args(wl, None, cfg))
    assert app is not None


def test_gpu_extra_is_ray_llm_with_the_cpu_torch_pin_and_stays_out_of_dev(repo):
    """`pip install 'rayctl[gpu]'`: ray[llm]==2.60.0 (pins vllm==0.29.0, which requires torch==2.13.0,
    checked against vLLM's published metadata when this was written); `dev` (CI, no GPU) never pulls it."""
    import tomllib

    extras = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    ray_pin = next(r for r in extras["local"] if r.startswith("ray["))
    assert "ray[llm]==" + ray_pin.split("==")[1] in extras["gpu"]
    torch = [r for r in extras["local"] if r.startswith("torch")]
    assert torch == ["torch==2.13.0"] and [r for r in extras["gpu"] if r.startswith("torch")] == torch
    assert not any("gpu" in r or "llm" in r or "vllm" in r for r in extras["dev"])


def test_the_counter_answers_get_metrics_itself():
    """engine vllm deploys serve_app's TokenCounter as its own app at <prefix>/-/rayctl: its
    __call__ answers GET .../metrics with the totals (the class itself, with a real Starlette request)."""
    import asyncio

    from starlette.requests import Request

    from rayctl.workloads.serve_app import token_counter

    cls = token_counter().func_or_class
    c = cls()
    c.add(1, 5, 7)
    c.add(0, 0, 2)

    def req(method, path):
        return Request({"type": "http", "method": method, "path": path, "headers": [], "query_string": b""})

    ok = asyncio.run(c(req("GET", "/chat/-/rayctl/metrics")))
    assert ok.status_code == 200 and json.loads(ok.body) == {"requests": 1, "input_tokens": 5, "output_tokens": 9}
    assert asyncio.run(c(req("POST", "/-/rayctl/metrics"))).status_code == 405
    assert asyncio.run(c(req("GET", "/-/rayctl/other"))).status_code == 404
