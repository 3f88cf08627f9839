"""Self-hosted $ per 1M tokens on the planner's cheapest offers vs managed APIs, in process."""

from __future__ import annotations

import pytest
from genai_prices import Usage, calc_price

from costhelpers import local_batch_infer_run, ts
from rayctl.planning import catalog as catalog_mod
from rayctl.cost import compare as cmp
from rayctl.planning import throughputs
from rayctl.errors import InputError


def _cheapest(shared_catalog, name, count, spot):
    prices = [o.spot_price if spot else o.price for o in catalog_mod.load(str(shared_catalog)).offers
              if o.accelerator == name and o.count == count]
    return min(p for p in prices if p is not None)


def _row(doc, throughput, mode):
    (row,) = [r for r in doc["self_hosted"] if r["throughput"] == throughput and r["mode"] == mode]
    return row


def test_reference_throughputs_ship_with_their_source():
    rows = throughputs.load()
    got = {(r.engine, r.accelerator): r.output_tokens_per_s for r in rows if r.model == "llama-3.1-8b"}
    # SGLang's benchmark_vllm_060 README (one A100 80G, ShareGPT, 5,000 prompts) and TensorRT-LLM's perf overview
    assert got == {("sglang", "A100-80GB"): 4281.51, ("vllm", "A100-80GB"): 4132.37,
                   ("trtllm", "H100"): 15220, ("trtllm", "H200"): 17744}
    for r in rows:
        assert r.kind == "published" and r.count >= 1
        assert r.engine_version and r.precision and r.input_len and r.output_len and r.date_read
        repo, _, where = r.source.partition(" ")
        assert repo in ("sgl-project/sglang", "NVIDIA/TensorRT-LLM") and where.split(":")[0].endswith(".md")
        assert "issue" not in r.source.lower()


def test_reference_arithmetic_on_cheapest_spot_and_on_demand(shared_catalog):
    doc = cmp.compare(catalog_flag=str(shared_catalog))
    assert doc["gpu"] == "A100-80GB:1" and doc["utilization"] == 0.7
    assert doc["request"] == {"input_tokens": 1000, "output_tokens": 250, "source": "default"}
    spot = _cheapest(shared_catalog, "A100-80GB", 1, True)
    od = _cheapest(shared_catalog, "A100-80GB", 1, False)
    assert {r["throughput"] for r in doc["self_hosted"]} == {"vLLM", "SGLang"}
    for label, tps in (("vLLM", 4132.37), ("SGLang", 4281.51)):
        for mode, price in (("spot", spot), ("on-demand", od)):
            r = _row(doc, label, mode)
            assert r["hourly_usd"] == pytest.approx(price)
            usd_req = price * 250 / (tps * 3600 * 0.7)
            assert r["usd_per_request"] == pytest.approx(usd_req)
            assert r["usd_per_1m_tokens"] == pytest.approx(usd_req / 1250 * 1e6)
            assert r["tokens_per_usd"] == pytest.approx(1250 / usd_req)
            assert r["monthly_usd"] == pytest.approx(price * 730)
            assert r["monthly_capacity_tokens"] == pytest.approx(tps * 3600 * 0.7 * 730 * 1250 / 250)
    assert [a["name"] for a in doc["apis"]] == ["gpt-4o-mini", "claude-3-5-haiku", "gemini-1.5-flash",
                                                "groq:llama-3.1-8b-instant"]
    for a in doc["apis"]:
        ref = a["name"].split(":", 1)[-1]
        want = calc_price(Usage(input_tokens=1000, output_tokens=250), ref,
                          provider_id=a["provider_id"] if ":" in a["name"] else None)
        assert a["usd_per_request"]["total"] == pytest.approx(float(want.total_price))
        assert a["usd_per_1m_tokens"] == pytest.approx(float(want.total_price) / 1250 * 1e6)


def test_break_even_volume(shared_catalog):
    doc = cmp.compare(catalog_flag=str(shared_catalog), apis=["gpt-4o-mini,groq:llama-3.1-8b-instant"])
    be = {(b["self_hosted"], b["api"]): b for b in doc["break_even"]}
    vllm = _row(doc, "vLLM", "spot")
    api = next(a for a in doc["apis"] if a["name"] == "gpt-4o-mini")
    b = be[("vLLM spot", "gpt-4o-mini")]
    per_token = api["usd_per_request"]["total"] / 1250
    assert b["monthly_tokens"] == pytest.approx(vllm["monthly_usd"] / per_token)
    assert b["monthly_requests"] == pytest.approx(b["monthly_tokens"] / 1250)
    assert b["self_hosted_cheaper_above"] is True
    assert b["monthly_tokens"] < vllm["monthly_capacity_tokens"]
    # a slow stated throughput on on-demand costs more per token than groq's hosted Llama 3.1 8B:
    # its break-even volume exceeds what the GPU can serve, so self-hosting never wins
    doc = cmp.compare(catalog_flag=str(shared_catalog), apis=["groq:llama-3.1-8b-instant"], throughput=200,
                      gpu="A100-80GB:1")
    slow = _row(doc, "stated", "on-demand")
    groq = doc["apis"][0]
    assert slow["usd_per_1m_tokens"] > groq["usd_per_1m_tokens"]
    nb = doc["break_even"][-1]
    assert nb["self_hosted"] == "stated on-demand"
    assert nb["self_hosted_cheaper_above"] is False and "never" in nb["why"]


def test_utilization_scales_self_hosted_cost_only(shared_catalog):
    full = cmp.compare(catalog_flag=str(shared_catalog), utilization=1.0)
    half = cmp.compare(catalog_flag=str(shared_catalog), utilization=0.5)
    assert _row(half, "vLLM", "spot")["usd_per_1m_tokens"] == pytest.approx(
        2 * _row(full, "vLLM", "spot")["usd_per_1m_tokens"])
    assert half["apis"] == full["apis"]


def test_more_gpus_scale_reference_throughput_and_price(shared_catalog):
    doc = cmp.compare(catalog_flag=str(shared_catalog), gpu="A100-80GB:2")
    r = _row(doc, "vLLM", "on-demand")
    assert r["output_tokens_per_s"] == pytest.approx(2 * 4132.37)
    assert r["hourly_usd"] == pytest.approx(_cheapest(shared_catalog, "A100-80GB", 2, False))
    assert any("scaled x2" in n for n in doc["notes"])


def test_stated_throughput_on_another_gpu(shared_catalog):
    doc = cmp.compare(catalog_flag=str(shared_catalog), gpu="H100:1", throughput=9000, input_tokens=500,
                      output_tokens=500)
    r = _row(doc, "stated", "spot")
    price = _cheapest(shared_catalog, "H100", 1, True)
    assert r["usd_per_1m_tokens"] == pytest.approx(price * 500 / (9000 * 3600 * 0.7) / 1000 * 1e6)
    assert doc["request"]["source"] == "flags"


def test_gpu_without_reference_is_scaled_by_bandwidth_or_published_when_it_has_one(shared_catalog):
    # L4 has no published figure: each engine's nearest one (A100-80GB), x 300/2039 GB/s
    doc = cmp.compare(catalog_flag=str(shared_catalog), gpu="L4:1")
    r = _row(doc, "vLLM (scaled)", "on-demand")
    assert r["kind"] == "scaled" and r["output_tokens_per_s"] == pytest.approx(4132.37 * 300 / 2039)
    assert any("memory bandwidth 300/2039" in n for n in doc["notes"])
    # H100 has a published figure (TensorRT-LLM's): only published rows, nothing scaled
    doc = cmp.compare(catalog_flag=str(shared_catalog), gpu="H100:1")
    assert [(r["throughput"], r["kind"]) for r in doc["self_hosted"]][0] == ("TensorRT-LLM", "published")
    assert _row(doc, "TensorRT-LLM", "on-demand")["output_tokens_per_s"] == 15220
    assert all(r["kind"] == "published" for r in doc["self_hosted"])


def test_gpu_throughput_flag_states_a_per_gpu_figure(shared_catalog):
    doc = cmp.compare(catalog_flag=str(shared_catalog), gpu="H100:8", gpu_throughput=["H100=6000", "A100-80GB=2000"])
    r = _row(doc, "stated", "spot")
    assert r["output_tokens_per_s"] == 48000 and r["kind"] == "stated"
    assert r["usd_per_1m_output_tokens"] == pytest.approx(r["hourly_usd"] / (48000 * 3600 * 0.7) * 1e6)
    with pytest.raises(InputError, match="no --gpu-throughput figure for L4"):
        cmp.compare(catalog_flag=str(shared_catalog), gpu="L4:1", gpu_throughput=["H100=6000"])
    with pytest.raises(InputError, match="write ACCELERATOR=TOK_S"):
        cmp.compare(catalog_flag=str(shared_catalog), gpu="L4:1", gpu_throughput=["H100:8"])


def test_no_reference_for_gpu_or_model(shared_catalog):
    with pytest.raises(InputError, match="memory bandwidth is unknown"):
        cmp.compare(catalog_flag=str(shared_catalog), gpu="K80:1")
    with pytest.raises(InputError, match="no reference throughput ships for this model"):
        cmp.compare(catalog_flag=str(shared_catalog), model="mistral-7b")
    # spellings of the same model find the same figures
    doc = cmp.compare(catalog_flag=str(shared_catalog), model="meta-llama/Meta-Llama-3.1-8B-Instruct")
    assert _row(doc, "vLLM", "spot")["output_tokens_per_s"] == 4132.37


@pytest.mark.parametrize("zero_segment", [False, True])
def test_local_batch_infer_run_priced_at_cloud_offers(shared_catalog, ledger, gpu_recipe, zero_segment):
    """The ledger row a local batch-infer launch records ($0/h) -> measured throughput, priced at the
    planner's cheapest cloud offers for the recipe's accelerators."""
    rid = local_batch_infer_run(ledger, gpu_recipe, zero_segment=zero_segment)
    doc = cmp.compare(catalog_flag=str(shared_catalog), run_id=rid, ledger=ledger)
    assert doc["run"]["output_tokens_per_s"] == pytest.approx(28_000 / 100)  # 100 s from start to end
    assert doc["run"]["target"] == "local" and doc["run"]["priced_on"] == "A100-80GB:1"
    assert doc["request"] == {"input_tokens": 60, "output_tokens": 140, "source": f"average per row of run {rid}"}
    assert [r["kind"] for r in doc["self_hosted"]] == ["measured", "measured"]  # no 'actual': it cost $0
    spot = _row(doc, "measured", "spot")
    price = _cheapest(shared_catalog, "A100-80GB", 1, True)
    usd_req = price * 140 / (280 * 3600 * 0.7)
    assert spot["tokens_per_usd"] == pytest.approx(200 / usd_req)
    assert any("$0/h" in n and "cheapest cloud offers for A100-80GB:1" in n for n in doc["notes"])


def test_cloud_run_shows_its_actual_cost(shared_catalog, ledger, gpu_recipe):
    rid = ledger.start_run(recipe="tiny-infer", kind="batch-infer", target="cloud", started_at=ts("10:00"),
                           recipe_path=str(gpu_recipe), spot=True, hourly_usd=1.19, cloud="runpod",
                           accelerator="A100-80GB", accelerator_count=1)
    ledger.open_segment(rid, cloud="runpod", spot=True, hourly_usd_per_node=1.19, started_at=ts("10:00"))
    ledger.update(rid, rows=1000, input_tokens=1_000_000, output_tokens=4_000_000,
                  metrics={"duration_s": 900.0, "output_tokens": 4_000_000})
    ledger.finish(rid, "succeeded", ended_at=ts("10:30"))
    doc = cmp.compare(catalog_flag=str(shared_catalog), run_id=rid, ledger=ledger)
    # the workload's own processing time wins over the run's wall clock (which includes startup)
    assert doc["run"]["output_tokens_per_s"] == pytest.approx(4_000_000 / 900)
    assert "metrics.duration_s" in doc["run"]["duration_source"]
    (actual,) = [r for r in doc["self_hosted"] if r["kind"] == "actual"]
    assert actual["usd_total"] == pytest.approx(1.19 * 0.5)
    assert actual["tokens_per_usd"] == pytest.approx(5_000_000 / (1.19 * 0.5))


def test_run_recipe_gone_falls_back_to_ledger_accelerator_or_asks_for_gpu(shared_catalog, ledger, gpu_recipe):
    rid = local_batch_infer_run(ledger, gpu_recipe, zero_segment=False)
    gpu_recipe.unlink()
    with pytest.raises(InputError, match="Pass --gpu NAME:COUNT"):
        cmp.compare(catalog_flag=str(shared_catalog), run_id=rid, ledger=ledger)
    doc = cmp.compare(catalog_flag=str(shared_catalog), run_id=rid, ledger=ledger, gpu="L4:1")
    assert doc["gpu"] == "L4:1"


def test_run_without_tokens_or_unknown(shared_catalog, ledger):
    rid = ledger.start_run(recipe="t", kind="train", target="local", started_at=ts("10:00"))
    ledger.finish(rid, "succeeded", ended_at=ts("10:05"))
    with pytest.raises(InputError, match="recorded no output tokens"):
        cmp.compare(catalog_flag=str(shared_catalog), run_id=rid, ledger=ledger, gpu="A100-80GB:1")
    with pytest.raises(InputError, match="no such run"):
        cmp.compare(catalog_flag=str(shared_catalog), run_id="nope", ledger=ledger)


@pytest.mark.parametrize("text, value", [("0.7", 0.7), ("70%", 0.7), ("1", 1.0), (".25", 0.25)])
def test_parse_utilization(text, value):
    assert cmp.parse_utilization(text) == pytest.approx(value)


@pytest.mark.parametrize("text, msg", [("70", "did you mean 0.7"), ("0", "more than 0"), ("-0.5", "more than 0"),
                                       ("abc", "not a number"), ("nan", "more than 0"), ("150%", "at most 1")])
def test_parse_utilization_rejects(text, msg):
    with pytest.raises(InputError, match=msg):
        cmp.parse_utilization(text)


def test_run_recipe_edited_or_invalid_uses_its_resources(shared_catalog, ledger, gpu_recipe):
    rid = local_batch_infer_run(ledger, gpu_recipe, zero_segment=False)
    # edited since the run, and no longer valid as a whole (unknown top-level field)
    gpu_recipe.write_text(gpu_recipe.read_text().replace("A100-80GB:1", "L4:1") + "colour: blue\n")
    doc = cmp.compare(catalog_flag=str(shared_catalog), run_id=rid, ledger=ledger)
    assert doc["gpu"] == "L4:1"
    assert any("does not validate now" in n for n in doc["notes"])
    assert any("changed since run" in n for n in doc["notes"])


def test_ambiguous_run_prefix(shared_catalog, ledger, gpu_recipe):
    local_batch_infer_run(ledger, gpu_recipe, zero_segment=False)
    local_batch_infer_run(ledger, gpu_recipe, zero_segment=False)
    with pytest.raises(InputError, match="ambiguous, 2 runs start with it"):
        cmp.compare(catalog_flag=str(shared_catalog), run_id="tiny-infer", ledger=ledger)
