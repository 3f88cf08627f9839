"""Plans ranked by $ per 1M output tokens: stated, measured, published and scaled throughputs.

No network: the shared SkyPilot catalog, the shipped `pricing/throughputs.csv`, and a real
SQLite ledger written in the test's RAYCTL_HOME.
"""

from __future__ import annotations

import json

import pytest

from rayctl.planning import catalog as catalog_mod
from rayctl.planning import planner
from rayctl import recipe
from rayctl.planning import throughputs as tp
from rayctl.ledger import Ledger
from tests.conftest import assert_no_traceback

EXAMPLE = """name: ex
kind: batch-infer
resources:
  accelerators: [H100:8, A100-80GB:8]
  spot: true
  clouds: [aws, gcp]
workload: {input: prompts.jsonl, output: out/}
"""
STATED = ["--gpu-throughput", "H100=6000", "--gpu-throughput", "A100-80GB=2000"]


@pytest.fixture
def example(tmp_path):
    p = tmp_path / "ex.yaml"
    p.write_text(EXAMPLE)
    return p


def _rec(text: str, path: str = "r.yaml"):
    return recipe.loads(text.encode(), path)


def test_example_chooses_h100_spot_by_cost_per_token(cli, example, shared_catalog):
    r = cli("plan", example, "--catalog", shared_catalog, "--json", *STATED)
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert doc["objective"] == "per-token"
    c = doc["chosen"]
    assert (c["accelerator"], c["accelerator_count"], c["spot"], c["hourly_usd"]) == ("H100", 8, True, 11.7984)
    assert c["output_tokens_per_s"] == 48000 and c["throughput_source"] == "stated"
    assert round(c["usd_per_1m_output_tokens"], 4) == 0.0683
    assert c["usd_per_1m_output_tokens"] == pytest.approx(11.7984 / (48000 * 3600) * 1e6)
    a100 = [x for x in doc["candidates"] if x["accelerator"] == "A100-80GB"]
    assert a100[0]["hourly_usd"] == 5.8394 and round(a100[0]["usd_per_1m_output_tokens"], 4) == 0.1014
    keys = [x["usd_per_1m_output_tokens"] for x in doc["candidates"]]
    assert keys == sorted(keys)  # the failover order follows $ per token
    assert {f["accelerator"]: f["source"] for f in doc["throughput"]["figures"]} == {
        "A100-80GB": "stated", "H100": "stated"}

    # hourly: today's ranking and JSON (the cheaper A100-80GB:8 per hour; no per-token fields)
    h = json.loads(cli("plan", example, "--catalog", shared_catalog, "--json", *STATED,
                       "--objective", "hourly").out)
    assert h["objective"] == "hourly" and h["chosen"]["hourly_usd"] == 5.8394
    assert h["chosen"]["accelerator"] == "A100-80GB" and "usd_per_1m_output_tokens" not in h["chosen"]
    assert "throughput" not in h

    text = cli("plan", example, "--catalog", shared_catalog, *STATED)
    assert text.code == 0, text
    assert "$/1M out tok" in text.out and "$0.0683" in text.out
    assert "per 1M output tokens" in text.out


def test_objective_defaults_by_kind_and_recipe_key_and_flag(cli, tmp_path, shared_catalog):
    kinds = {"batch-infer": "per-token", "serve": "per-token", "train": "hourly", "tune": "hourly"}
    files = []
    wl = {"batch-infer": "workload: {input: p.jsonl, output: out/}\n",
          "tune": "workload:\n  param_space:\n    lr: {loguniform: [0.0001, 0.1]}\n"}
    for kind in kinds:
        p = tmp_path / f"{kind}.yaml"
        p.write_text(f"name: k-{kind}\nkind: {kind}\nresources:\n  accelerators: L4:1\n" + wl.get(kind, ""))
        files.append(p)
    doc = json.loads(cli("plan", *files, "--catalog", shared_catalog, "--json").out)
    assert [d["objective"] for d in doc["plans"]] == list(kinds.values())  # each plan carries its own
    for d in doc["plans"]:
        assert ("usd_per_1m_output_tokens" in d["chosen"]) == (d["objective"] == "per-token")
    p = tmp_path / "own.yaml"
    p.write_text("name: own\nkind: train\nresources:\n  accelerators: L4:1\n  objective: per-token\n")
    assert json.loads(cli("plan", p, "--catalog", shared_catalog, "--json").out)["objective"] == "per-token"
    doc = json.loads(cli("plan", p, "--catalog", shared_catalog, "--json", "--objective", "hourly").out)
    assert doc["objective"] == "hourly"
    bad = cli("plan", p, "--catalog", shared_catalog, "--objective", "cheap")
    assert bad.code == 2 and "--objective cheap" in bad.err
    assert_no_traceback(bad)
    p.write_text("name: own\nkind: train\nresources:\n  accelerators: L4:1\n  objective: per-hour\n")
    bad = cli("plan", p, "--catalog", shared_catalog)
    assert bad.code == 2 and "resources.objective" in bad.err and ":5:" in bad.err, bad.err


def test_scaled_figure_for_a_gpu_without_one_and_size_class_for_the_demo_model(shared_catalog, rayctl_home):
    cat = catalog_mod.load(str(shared_catalog))
    r = _rec("name: s\nkind: batch-infer\nresources:\n  accelerators: [L4:1, A100-80GB:1]\n"
             "workload: {input: p.jsonl, output: out/}\n")
    p = planner.plan(r, cat, objective="per-token", figures=tp.Resolver(*planner.recipe_model(r)))
    l4, a100 = p.figures["L4"], p.figures["A100-80GB"]
    assert a100.source == "published" and a100.per_gpu == pytest.approx(4132.37)  # vLLM (engine auto)
    assert l4.source == "scaled" and l4.per_gpu == pytest.approx(4132.37 * 300 / 2039)
    assert "size class" in a100.note and a100.model == "llama-3.1-8b"  # the demo model: closest (smallest) class
    for c in p.candidates:
        f = p.figures[c.accelerator]
        assert c.throughput_source == f.source
        assert c.usd_per_1m_output_tokens == pytest.approx(c.hourly_usd / (f.per_gpu * 3600) * 1e6, rel=1e-5)
    keys = [c.usd_per_1m_output_tokens for c in p.candidates]
    assert keys == sorted(keys)
    # a 70B model uses its own published rows: per GPU = node figure / GPUs it was published on
    f = tp.Resolver("meta-llama/Llama-3.1-70B-Instruct", "vllm", use_ledger=False).figure("H100")
    assert f.source == "published" and f.per_gpu == pytest.approx(3700.64 / 4) and f.note is None
    # an unknown 13B model: the closest size class (8B), marked so
    f = tp.Resolver("acme-13b", "sglang", use_ledger=False).figure("A100-80GB")
    assert f.per_gpu == pytest.approx(4281.51) and "13B parameters" in f.note


def _cloud_run(led: Ledger, *, acc="H100", count=8, nodes=1, out_tok, seconds, model="llama-3.1-8b",
               engine="vllm", status="succeeded", target="cloud"):
    fields = dict(accelerator=acc, accelerator_count=count) if acc else {}
    rid = led.start_run(recipe="m", kind="batch-infer", target=target, status="running", nodes=nodes, **fields)
    led.update(rid, output_tokens=out_tok, metrics={"model": model, "engine": engine, "duration_s": seconds})
    led.finish(rid, status)
    return rid


def test_measured_median_from_the_ledger_and_stated_wins(cli, tmp_path, shared_catalog, rayctl_home):
    led = Ledger(rayctl_home / "ledger.db")
    try:
        # three GPU runs of the same model and engine: per GPU 1000, 1500, 4000 -> median 1500
        _cloud_run(led, out_tok=8 * 1000 * 100, seconds=100)
        _cloud_run(led, out_tok=8 * 1500 * 100, seconds=100)
        _cloud_run(led, count=4, nodes=2, out_tok=8 * 4000 * 50, seconds=50)
        # none of these count: failed, another engine, another model, a CPU-only local run
        _cloud_run(led, out_tok=10**9, seconds=1, status="failed")
        _cloud_run(led, out_tok=10**9, seconds=1, engine="transformers")
        _cloud_run(led, out_tok=10**9, seconds=1, model="llama-3.1-70b")
        _cloud_run(led, acc=None, out_tok=10**9, seconds=1, target="local")
    finally:
        led.close()
    f = tp.Resolver("meta-llama/Llama-3.1-8B-Instruct", "vllm").figure("H100")
    assert (f.source, f.runs, f.per_gpu) == ("measured", 3, 1500)
    assert tp.Resolver("llama-3.1-8b", "vllm").figure("A100-80GB").source == "published"  # no runs there

    p = tmp_path / "m.yaml"
    p.write_text("name: m\nkind: batch-infer\nresources:\n  accelerators: [H100:8, A100-80GB:8]\n  spot: true\n"
                 "  clouds: [aws, gcp]\nworkload: {model: meta-llama/Llama-3.1-8B-Instruct, engine: vllm, input: p.jsonl, output: out/}\n")
    doc = json.loads(cli("plan", p, "--catalog", shared_catalog, "--json").out)
    h100 = next(c for c in doc["candidates"] if c["accelerator"] == "H100")
    assert (h100["throughput_source"], h100["throughput_runs"], h100["output_tokens_per_s"]) == ("measured", 3, 12000)
    a100 = next(c for c in doc["candidates"] if c["accelerator"] == "A100-80GB")
    assert a100["throughput_source"] == "published" and "throughput_runs" not in a100
    # measured H100 (1,500/GPU) loses to published A100-80GB (4,132/GPU) at their prices
    assert doc["chosen"]["accelerator"] == "A100-80GB"
    doc = json.loads(cli("plan", p, "--catalog", shared_catalog, "--json", "--gpu-throughput", "H100=6000").out)
    h100 = next(c for c in doc["candidates"] if c["accelerator"] == "H100")
    assert h100["throughput_source"] == "stated" and "throughput_runs" not in h100


def test_bad_gpu_throughput_flag_is_exit_2(cli, example, shared_catalog):
    for bad in ("H100", "H100=fast", "H100=-1", "H100:8=100", "=5"):
        r = cli("plan", example, "--catalog", shared_catalog, "--gpu-throughput", bad)
        assert r.code == 2 and "--gpu-throughput" in r.err and "ACCELERATOR=TOK_S" in r.err, r
        assert_no_traceback(r)


def test_offer_without_any_figure_ranks_last_with_a_warning(tmp_path):
    d = tmp_path / "cat" / "aws"
    d.mkdir(parents=True)
    (d / "vms.csv").write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone\n"
        "cheap,M60,1.0,4.0,16.0,,0.10,,us-east-1,use1-az1\n"
        "g6,L4,1.0,4.0,16.0,,0.80,,us-east-1,use1-az1\n")
    cat = catalog_mod.load(str(tmp_path / "cat"))
    r = _rec("name: s\nkind: serve\nresources:\n  accelerators: [M60:1, L4:1]\n")
    p = planner.plan(r, cat, objective="per-token", figures=tp.Resolver("rayctl-demo", use_ledger=False))
    assert [c.accelerator for c in p.candidates] == ["L4", "M60"]
    assert p.candidates[1].usd_per_1m_output_tokens is None and p.candidates[1].throughput_source == "none"
    assert any("no throughput figure for M60" in w for w in p.warnings)
    assert planner.plan(r, cat).chosen.accelerator == "M60"  # hourly: the cheaper per hour


def test_api_comparison_in_the_plan(cli, example, shared_catalog, tmp_path):
    r = cli("plan", example, "--catalog", shared_catalog, "--json", *STATED, "--api", "gpt-4o-mini")
    assert r.code == 0, r
    b = json.loads(r.out)["baselines"]
    assert b["request"] == {"input_tokens": 1000, "output_tokens": 250, "source": "default"}
    assert b["utilization"] == 0.7 and [a["name"] for a in b["apis"]] == ["gpt-4o-mini"]
    (row,) = b["self_hosted"]
    assert row["kind"] == "stated" and row["output_tokens_per_s"] == 48000 and row["hourly_usd"] == 11.7984
    assert row["usd_per_1m_output_tokens"] == pytest.approx(11.7984 / (48000 * 3600 * 0.7) * 1e6)
    (be,) = b["break_even"]
    assert be["api"] == "gpt-4o-mini" and be["monthly_tokens"] == pytest.approx(
        row["monthly_usd"] / (b["apis"][0]["usd_per_request"]["total"] / 1250))
    # the recipe key does the same, in the text too
    p = tmp_path / "c.yaml"
    p.write_text(EXAMPLE + "compare_to: [gpt-4o-mini]\n")
    t = cli("plan", p, "--catalog", shared_catalog, *STATED)
    assert t.code == 0, t
    assert "vs managed APIs" in t.out and "gpt-4o-mini:" in t.out
    assert json.loads(cli("plan", p, "--catalog", shared_catalog, "--json", *STATED).out)["baselines"] == b


def test_budget_and_max_hourly_still_apply_with_per_token(shared_catalog):
    from rayctl.errors import NoPlanError

    cat = catalog_mod.load(str(shared_catalog))
    r = _rec(EXAMPLE.replace("  clouds: [aws, gcp]\n", "  clouds: [aws, gcp]\n  max_hourly_usd: 10\n"))
    figs = tp.Resolver("x", stated={"h100": 6000, "a100-80gb": 2000}, use_ledger=False)
    p = planner.plan(r, cat, objective="per-token", figures=figs)
    assert p.chosen.accelerator == "A100-80GB" and all(c.hourly_usd <= 10 for c in p.candidates)
    with pytest.raises(NoPlanError, match="no offer fits the budget"):
        planner.plan(_rec(EXAMPLE), cat, objective="per-token", figures=figs, budget_usd=1, hours=1)


def test_preemption_aware_ranking_divides_effective_price_by_tokens(shared_catalog):
    cat = catalog_mod.load(str(shared_catalog))
    figs = tp.Resolver("x", stated={"h100": 6000, "a100-80gb": 2000}, use_ledger=False)
    # a made-up interruption rate per (cloud, region, type): aws ap-south-1 is preempted a lot
    def rate(cloud, region, itype):
        return 5.0 if region == "ap-south-1" else 0.01

    p = planner.plan(_rec(EXAMPLE), cat, objective="per-token", figures=figs, rate_fn=rate)
    assert p.ranking == "effective"
    for c in p.candidates:
        assert c.effective_usd_per_1m_output_tokens == pytest.approx(
            c.effective_hourly_usd / (c.output_tokens_per_s * 3600) * 1e6, rel=1e-6)
    keys = [c.effective_usd_per_1m_output_tokens for c in p.candidates]
    assert keys == sorted(keys)
    assert p.chosen.region != "ap-south-1"  # the sticker-cheapest per token loses to its preemptions


def test_serve_runs_transformers_and_borrows_other_engines_figures_with_a_note():
    r = _rec("name: s\nkind: serve\nresources:\n  accelerators: A100-80GB:1\n")
    assert planner.recipe_model(r) == ("rayctl-demo", "transformers")
    f = tp.Resolver(*planner.recipe_model(r), use_ledger=False).figure("A100-80GB")
    assert f.source == "published" and f.per_gpu == pytest.approx((4281.51 + 4132.37) / 2)  # median of the two
    assert "no published figure for engine transformers" in f.note and "size class" in f.note


def test_launch_rejects_an_unknown_objective(cli, example):
    r = cli("launch", example, "--objective", "cheapest", "--target", "cloud", "--yes")
    assert r.code == 2 and "--objective cheapest" in r.err, r
    assert_no_traceback(r)
