"""`rayctl cost compare --run A --run B`: recorded runs side by side, from real ledger rows.

The rows are written through the Ledger API as the launchers write them: a self-hosted cloud
run with billed segments, a local run at $0/h, and a batch-infer `engine: http` run against a
managed API carrying the metrics contract (docs/cost.md): `metrics.engine == "http"`,
`metrics.api` = {provider, model, input_usd_per_mtok, output_usd_per_mtok, source} and its
actual cost in `runs.cost_usd`.
"""

from __future__ import annotations

import json

import pytest

from costhelpers import assert_no_traceback, local_batch_infer_run, ts
from rayctl.cost import compare as cmp
from rayctl.errors import InputError

API = {"provider": "openai", "model": "gpt-4o-mini", "input_usd_per_mtok": 0.15, "output_usd_per_mtok": 0.6,
       "source": "genai-prices 0.0.30"}


def cloud_run(led, recipe_path) -> str:
    """30 min on one spot A100-80GB at $1.19/h; the workload processed 1M + 4M tokens in 900 s."""
    rid = led.start_run(recipe="tiny-infer", kind="batch-infer", target="cloud", started_at=ts("10:00"),
                        recipe_path=str(recipe_path), spot=True, hourly_usd=1.19, cloud="runpod",
                        accelerator="A100-80GB", accelerator_count=1)
    led.open_segment(rid, cloud="runpod", spot=True, hourly_usd_per_node=1.19, started_at=ts("10:00"))
    led.update(rid, rows=1000, input_tokens=1_000_000, output_tokens=4_000_000,
               metrics={"duration_s": 900.0, "output_tokens": 4_000_000, "engine": "vllm",
                        "model": "llama-3.1-8b", "nodes_used": 1})
    led.finish(rid, "succeeded", ended_at=ts("10:30"))
    return rid


def api_run(led, *, cost: float | None = 0.5) -> str:
    """The same 1000 prompts sent to gpt-4o-mini: 1M + 0.5M tokens in 250 s, cost recorded by the run."""
    rid = led.start_run(recipe="tiny-infer-api", kind="batch-infer", target="local", started_at=ts("11:00"),
                        nodes=1, hourly_usd=0.0)
    metrics = {"duration_s": 250.0, "engine": "http", "api": dict(API), "model": "gpt-4o-mini",
               "rows": 1000, "input_tokens": 1_000_000, "output_tokens": 500_000, "nodes_used": 1}
    if cost is not None:
        metrics["api_cost_usd"] = cost
    led.update(rid, rows=1000, input_tokens=1_000_000, output_tokens=500_000, metrics=metrics)
    led.finish(rid, "succeeded", ended_at=ts("11:05"))
    if cost is not None:
        led.update(rid, cost_usd=cost)  # the API's actual cost (finish() sets the segments' $0)
    return rid


def test_self_hosted_and_api_runs_side_by_side(shared_catalog, ledger, gpu_recipe):
    self_id, api_id = cloud_run(ledger, gpu_recipe), api_run(ledger)
    single = cmp.compare(catalog_flag=str(shared_catalog), run_id=self_id, ledger=ledger)
    doc = cmp.compare(catalog_flag=str(shared_catalog), run_id=[self_id, api_id], ledger=ledger)
    assert [r["id"] for r in doc["runs"]] == [self_id, api_id]
    me, api = doc["runs"]
    # each entry is the single-run `run` object, plus the side-by-side figures
    assert set(single["run"]) <= set(me) and set(single["run"]) <= set(api)
    assert {k: me[k] for k in single["run"]} == single["run"]

    billed = 1.19 * 0.5
    assert me["engine"] == "vllm" and me["tokens"] == 5_000_000
    assert me["tokens_per_s"] == pytest.approx(5_000_000 / 900) and me["output_tokens_per_s"] == pytest.approx(4_000_000 / 900)
    assert me["usd_per_1m_tokens"] == pytest.approx(billed / 5)
    assert me["tokens_per_usd"] == pytest.approx(5_000_000 / billed)
    assert me["cost_basis"].startswith("billed cost in the ledger")

    assert api["engine"] == "http" and api["api"] == API and api["priced_on"] == "API openai:gpt-4o-mini"
    assert api["tokens_per_s"] == pytest.approx(1_500_000 / 250)  # measured tokens / measured duration
    assert api["output_tokens_per_s"] == pytest.approx(500_000 / 250)
    assert api["usd_per_1m_tokens"] == pytest.approx(0.5 / 1.5)  # runs.cost_usd / tokens, not list prices
    assert api["tokens_per_usd"] == pytest.approx(1_500_000 / 0.5)
    assert "runs.cost_usd" in api["cost_basis"] and "genai-prices 0.0.30" in api["cost_basis"]
    assert "run" not in doc and "self_hosted" not in doc


def test_a_local_run_is_priced_at_its_cheapest_offer(shared_catalog, ledger, gpu_recipe):
    local_id, api_id = local_batch_infer_run(ledger, gpu_recipe, zero_segment=False), api_run(ledger)
    doc = cmp.compare(catalog_flag=str(shared_catalog), run_id=[api_id, local_id], ledger=ledger)
    api, local = doc["runs"]
    assert api["id"] == api_id and local["id"] == local_id
    single = cmp.compare(catalog_flag=str(shared_catalog), run_id=local_id, ledger=ledger)
    cheapest = min(single["self_hosted"], key=lambda r: r["usd_per_1m_tokens"])
    assert local["usd_per_1m_tokens"] == pytest.approx(cheapest["usd_per_1m_tokens"])
    assert local["tokens_per_usd"] == pytest.approx(cheapest["tokens_per_usd"])
    assert local["tokens_per_s"] == pytest.approx(40_000 / 100)
    assert local["cost_basis"].startswith(f"measured throughput priced at the cheapest {cheapest['mode']} offer")
    assert any(n.startswith(f"{local_id}: ") and "$0/h" in n for n in doc["notes"])


def test_side_by_side_refusals(shared_catalog, ledger, gpu_recipe):
    self_id = cloud_run(ledger, gpu_recipe)
    no_cost = api_run(ledger, cost=None)
    with pytest.raises(InputError, match="with no recorded cost"):
        cmp.compare(catalog_flag=str(shared_catalog), run_id=[self_id, no_cost], ledger=ledger)
    with pytest.raises(InputError, match="compare it with a self-hosted run of the same prompts"):
        cmp.compare(catalog_flag=str(shared_catalog), run_id=no_cost, ledger=ledger)  # one API run alone
    with pytest.raises(InputError, match="is given twice"):
        cmp.compare(catalog_flag=str(shared_catalog), run_id=[self_id, self_id[:12]], ledger=ledger)
    with pytest.raises(InputError, match="pass one or the other"):
        cmp.compare(catalog_flag=str(shared_catalog), run_id=[self_id, no_cost], throughput=100.0, ledger=ledger)


def test_cli_repeated_run_json_and_text(cli, shared_catalog, ledger, gpu_recipe):
    self_id, api_id = cloud_run(ledger, gpu_recipe), api_run(ledger)
    one = cli("cost", "compare", "--run", self_id, "--json", "--catalog", shared_catalog)
    assert one.code == 0, one
    assert "run" in json.loads(one.out) and "runs" not in json.loads(one.out)  # one --run: today's document
    r = cli("cost", "compare", "--run", self_id, "--run", api_id, "--json", "--catalog", shared_catalog)
    assert r.code == 0, r
    assert [x["id"] for x in json.loads(r.out)["runs"]] == [self_id, api_id]
    t = cli("cost", "compare", "--run", self_id, "--run", api_id, "--catalog", shared_catalog)
    assert t.code == 0, t
    assert_no_traceback(t)
    for text in (self_id, api_id, "tok/s", "$/1M tokens", "tokens/$", "API openai:gpt-4o-mini", "$0.3333", "3,000,000"):
        assert text in t.out, (text, t.out)
    p = cli("cost", "compare", "--run", self_id, "--run", api_id, "--plot", "x.png", "--catalog", shared_catalog)
    assert p.code == 2 and "--plot" in p.err


def test_compare_without_run_uses_the_ledgers_measured_figure(shared_catalog, ledger, gpu_recipe):
    cloud_run(ledger, gpu_recipe)  # llama-3.1-8b on A100-80GB:1, vllm: 4M output tokens in 900 s
    doc = cmp.compare(catalog_flag=str(shared_catalog), ledger=ledger)
    assert doc["gpu"] == "A100-80GB:1"
    first = doc["throughputs"][0]
    assert first["kind"] == "measured" and first["output_tokens_per_s"] == pytest.approx(4_000_000 / 900)
    assert doc["self_hosted"][0]["throughput"] == "measured (ledger)"
    assert any(t["kind"] == "published" for t in doc["throughputs"][1:])  # still listed, for reference
    assert doc["notes"][0].startswith("Throughput used: median of 1 succeeded run(s) of llama-3.1-8b on A100-80GB")
    # another model has no measured runs: the published figures, as before
    other = cmp.compare(catalog_flag=str(shared_catalog), ledger=ledger, model="llama-3.1-70b")
    assert all(t["kind"] != "measured" for t in other["throughputs"])


def test_gpu_throughput_error_names_that_flag(cli, shared_catalog):
    r = cli("cost", "compare", "--gpu-throughput", "FOO=100", "--catalog", shared_catalog)
    assert r.code == 3, r  # no offer to price: the planner's no-plan exit, as for --gpu FOO:1
    assert r.err.count("--gpu-throughput foo=100:") == 1 and "--gpu foo" not in r.err, r.err
