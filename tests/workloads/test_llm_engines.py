"""batch-infer engines vllm, sglang and http without a cluster: the real `ray.data.llm` config
classes built from what rayctl builds (constructed, never mocked, and no Ray started), the
http engine's status checks against a real HTTP server on 127.0.0.1, the launch-side endpoint
and key handling, and an API run's recorded cost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rayctl import recipe as R
from rayctl.errors import RecipeError
from rayctl.ledger import Ledger
from rayctl.workloads import batch_infer as B
from rayctl.workloads import common
from rayctl.workloads import llm_engines as L
from tests.fake_openai import FakeOpenAI


def _payload_wl(spec) -> dict:
    return json.loads(spec.runtime_env["env_vars"][common.ENV])["workload"]


def _recipe(tmp_path: Path, body: str, name: str = "llm") -> Path:
    (tmp_path / "in.jsonl").write_text('{"prompt": "hi"}\n')
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\nkind: batch-infer\nworkload:\n  input: in.jsonl\n  output: out\n{body}")
    return p


def test_vllm_and_sglang_configs_are_the_real_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))  # build_processor's ray.init would write ~/.ray here
    (tmp_path / "ckpt").mkdir()
    from ray.data.llm import SGLangEngineProcessorConfig, vLLMEngineProcessorConfig
    import ray

    rec = R.load(_recipe(tmp_path, "  engine: vllm\n  model: ./ckpt\n  batch_size: 16\n  max_new_tokens: 20\n"
                                   "  engine_kwargs: {tensor_parallel_size: 2, max_model_len: 4096}\n"))
    spec = B.job_spec(rec, "r1")
    assert spec.needs_gpus == 2  # one engine of tensor_parallel_size GPUs must fit
    wl = _payload_wl(spec)
    cfg = L.processor_config("vllm", wl, total_gpu=8, accelerator="H100")
    assert type(cfg) is vLLMEngineProcessorConfig
    assert cfg.model_source == str(tmp_path / "ckpt") and cfg.batch_size == 16
    assert cfg.concurrency == 4  # unset: the cluster's 8 GPUs / 2 per engine
    assert cfg.accelerator_type == "H100"
    assert cfg.engine_kwargs["max_model_len"] == 4096 and cfg.engine_kwargs["tensor_parallel_size"] == 2
    pre, post = L.engine_row_fns("vllm", wl, ["prompt"])
    assert pre({"prompt": "x"})["sampling_params"] == {"temperature": 0.0, "top_p": 1.0, "max_tokens": 20}
    assert post({"prompt": "x", "generated_text": "y", "num_input_tokens": 3, "num_generated_tokens": 4,
                 "time_taken_llm": 0.5}) == {"prompt": "x", "generated_text": "y", "input_tokens": 3,
                                            "output_tokens": 4, "llm_s": 0.5}

    rec = R.load(_recipe(tmp_path, "  engine: sglang\n  model: ./ckpt\n  concurrency: [1, 3]\n"
                                   "  engine_kwargs: {dtype: half}\n", "sg"))
    wl = _payload_wl(B.job_spec(rec, "r2"))
    cfg = L.processor_config("sglang", wl, total_gpu=8)
    assert type(cfg) is SGLangEngineProcessorConfig
    assert cfg.concurrency == (1, 3) and cfg.engine_kwargs["dtype"] == "half" and cfg.accelerator_type is None
    assert L.engine_row_fns("sglang", wl, ["prompt"])[0]({"prompt": "x"})["sampling_params"]["max_new_tokens"] == 32

    assert L.accelerator_type(["L4:1"], {"GPU": 1, "accelerator_type:L4": 1}) == "L4"
    assert L.accelerator_type(["A100:8"], {"GPU": 1, "accelerator_type:L4": 1}) is None  # not on this cluster
    assert not ray.is_initialized() and not (tmp_path / ".ray").exists()  # configs only: no Ray started


def test_http_config_and_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYCTL_HOME", str(tmp_path / "home"))
    from ray.data.llm import HttpRequestProcessorConfig

    rec = R.load(_recipe(tmp_path, "  engine: http\n  endpoint: https://api.openai.com/v1/\n  model: gpt-4o-mini\n"
                                   "  concurrency: 2\n  qps: 5\n  max_retries: 4\n  api_key_env: MY_KEY\n"))
    spec = B.job_spec(rec, "r3")
    assert spec.needs_gpus == 0
    wl = _payload_wl(spec)
    assert wl["model"] == "gpt-4o-mini"  # a name for the API, never resolved as a path
    cfg = L.http_config(wl, "sk-test")
    assert type(cfg) is HttpRequestProcessorConfig
    assert cfg.url == "https://api.openai.com/v1/chat/completions" and cfg.qps == 5 and cfg.concurrency == 2
    assert cfg.headers == {"Authorization": "Bearer sk-test"}
    assert cfg.max_retries == 0 and isinstance(cfg.session_factory, L.CheckedSession)  # rayctl checks statuses
    assert cfg.session_factory.max_retries == 4
    pre, post = L.http_row_fns(wl, ["prompt"])
    row = pre({"prompt": "hello"})
    assert row["payload"]["model"] == "gpt-4o-mini"
    assert row["payload"]["messages"] == [{"role": "user", "content": "hello"}]
    out = post({**row, "http_response": {"choices": [{"message": {"content": "hi!"}}],
                                          "usage": {"prompt_tokens": 9, "completion_tokens": 3}}})
    assert (out["generated_text"], out["input_tokens"], out["output_tokens"]) == ("hi!", 9, 3)
    with pytest.raises(common.WorkloadError, match="without 'usage'"):
        post({**row, "http_response": {"choices": [{"message": {"content": "x"}}]}})


def _post(session_factory, url):
    async def go():
        async with session_factory() as s:
            async with s.post(url, data="{}", headers={"Authorization": "Bearer k"}) as r:
                return r.status, await r.json()

    return asyncio.run(go())


@pytest.mark.parametrize("statuses, outcome", [
    ([429, 500, 503], (200, 3)),  # retried with backoff, then the answer
    ([500, 500, 500], "answered HTTP 500 after 2 retries: scripted failure 500"),
    ([401], "answered HTTP 401: scripted failure 401; check the key"),  # not retried
])
def test_checked_session_retries_and_fails_clearly(statuses, outcome):
    srv = FakeOpenAI(statuses)
    try:
        n = len(statuses) if outcome[0] == 200 else 2
        factory = L.CheckedSession(srv.url, max_retries=n, wait_s=0.01)
        if isinstance(outcome, tuple):
            code, body = _post(factory, srv.url)
            assert code == 200 and body["usage"]["completion_tokens"] == 3
            assert len(srv.auth) == outcome[1] + 1 and srv.auth[0] == "Bearer k"
        else:
            with pytest.raises(common.WorkloadError) as e:
                _post(factory, srv.url)
            assert outcome in str(e.value) and srv.url in str(e.value)
            assert len(srv.auth) == (1 if statuses == [401] else 3)
    finally:
        srv.close()


# ---------------------------------------------------------------- launch side: endpoint, key, cost


def test_prepare_resolves_run_endpoint_and_reads_the_key(tmp_path, monkeypatch):
    from rayctl.runs import api_runs

    monkeypatch.setenv("RAYCTL_HOME", str(tmp_path / "home"))
    led = Ledger(tmp_path / "ledger.db")
    led.start_run(run_id="sv-1", recipe="sv", kind="serve", target="local", status="serving")
    led.update("sv-1", metrics={"url": "http://127.0.0.2:8123", "model": "rayctl-demo"})
    rec = R.load(_recipe(tmp_path, "  engine: http\n  endpoint: run:sv-1\n  api_key_env: RAYCTL_TEST_KEY\n"))
    monkeypatch.delenv("RAYCTL_TEST_KEY", raising=False)
    with pytest.raises(RecipeError) as e:
        api_runs.prepare(rec, led)
    p = e.value.problems[0]
    assert p.field == "workload.api_key_env" and p.line == 8 and "RAYCTL_TEST_KEY is not set" in p.message
    monkeypatch.setenv("RAYCTL_TEST_KEY", "sk-very-secret-123")
    ready = api_runs.prepare(rec, led)
    assert ready.workload["endpoint"] == "http://127.0.0.2:8123/v1" and ready.workload["endpoint_run"] == "sv-1"
    assert ready.workload["model"] == "rayctl-demo"
    spec = B.job_spec(ready, "r4")
    assert spec.runtime_env["env_vars"][L.API_KEY_ENV] == "sk-very-secret-123"  # moved to a file by with_secrets
    assert "sk-very-secret-123" not in spec.runtime_env["env_vars"][common.ENV]  # never in the payload
    assert rec.workload["endpoint"] == "run:sv-1"  # the loaded recipe is not changed

    bad = R.load(_recipe(tmp_path, "  engine: http\n  endpoint: run:nope\n", "bad"))
    with pytest.raises(RecipeError, match="no run 'nope'"):
        api_runs.prepare(bad, led)
    led.close()


def test_api_run_cost_is_recorded_from_genai_prices(tmp_path):
    from rayctl.planning import api_prices
    from rayctl.runs import api_runs

    led = Ledger(tmp_path / "ledger.db")

    def run(rid, endpoint, model, **extra):
        led.start_run(run_id=rid, recipe="b", kind="batch-infer", target="local", status="running")
        led.finish(rid, "succeeded", rows=10, input_tokens=2_000_000, output_tokens=1_000_000,
                   metrics={"engine": "http", "endpoint": endpoint, "api_model": model, "rows": 10, **extra})

    warnings: list = []
    run("api", "https://api.openai.com/v1", "gpt-4o-mini")
    api_runs.record_cost(led, "api", warnings.append)
    row = led.get("api")
    api = row["metrics"]["api"]
    assert (api["provider"], api["model"]) == ("openai", "gpt-4o-mini")
    assert api["source"] == f"genai-prices {api_prices.library_version()}"
    want = 2 * api["input_usd_per_mtok"] + 1 * api["output_usd_per_mtok"]
    assert row["cost_usd"] == pytest.approx(want) and row["metrics"]["api_cost_usd"] == pytest.approx(want)
    assert want > 0 and not warnings
    from rayctl.cost import accounting

    acc = accounting.run_cost(led, row)  # `rayctl cost report`: the cluster's $0 + the API's cost
    assert acc["api_cost_usd"] == pytest.approx(want) and acc["cost_usd"] == pytest.approx(want)

    run("unknown", "https://api.openai.com/v1", "no-such-model-xyz")
    api_runs.record_cost(led, "unknown", warnings.append)
    row = led.get("unknown")
    assert row["status"] == "succeeded" and row["cost_usd"] is None and row["metrics"]["api_cost_usd"] is None
    assert len(warnings) == 1 and "no-such-model-xyz" in warnings[0]

    run("self", "http://127.0.0.2:8000/v1", "rayctl-demo")  # a private host: no API price
    run("served", "https://my.host.example/v1", "rayctl-demo", endpoint_run="sv-1")  # a rayctl serve run
    for rid in ("self", "served"):
        api_runs.record_cost(led, rid, warnings.append)
        assert led.get(rid)["cost_usd"] == 0 and "api" not in led.get(rid)["metrics"]
    assert len(warnings) == 1
    assert not api_prices.is_managed_endpoint("http://localhost:8000/v1")
    assert not api_prices.is_managed_endpoint("http://10.1.2.3/v1") and not api_prices.is_managed_endpoint("http://head/v1")
    led.close()
