"""`rayctl cost report` and `rayctl cost compare` as a user runs them (subprocess of the CLI)."""

from __future__ import annotations

import html.parser
import json

import pytest

from costhelpers import assert_no_traceback, local_batch_infer_run, ts

pytestmark = pytest.mark.timeout(120)


def _seed(led):
    a = led.start_run(recipe="train-llm", kind="train", target="cloud", started_at=ts("10:00", "2025-03-01"))
    led.open_segment(a, cloud="runpod", region="CA", instance_type="1x_A100-80GB_SECURE", spot=True, nodes=2,
                     hourly_usd_per_node=1.19, started_at=ts("10:00", "2025-03-01"))
    led.open_segment(a, cloud="runpod", region="CA", instance_type="1x_A100-80GB_SECURE", spot=False, nodes=2,
                     hourly_usd_per_node=1.64, started_at=ts("11:30", "2025-03-01"))
    led.update(a, input_tokens=3_000_000, output_tokens=1_000_000, rows=100)
    led.finish(a, "succeeded", ended_at=ts("12:00", "2025-03-01"))
    b = led.start_run(recipe="nightly", kind="batch-infer", target="cloud", started_at=ts("08:00", "2025-03-05"))
    led.open_segment(b, cloud="aws", spot=False, hourly_usd_per_node=3.0, started_at=ts("08:00", "2025-03-05"))
    led.update(b, input_tokens=500_000, output_tokens=100_000, rows=1000)
    led.finish(b, "succeeded", ended_at=ts("10:00", "2025-03-05"))
    return a, b


# ---------------------------------------------------------------- report

def test_report_json_and_filters(cli, ledger):
    a, b = _seed(ledger)
    r = cli("cost", "report", "--json")
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert [x["id"] for x in doc["runs"]] == [b, a]
    run_a = doc["runs"][1]
    assert run_a["cost_usd"] == pytest.approx(2 * 1.5 * 1.19 + 2 * 0.5 * 1.64)
    assert run_a["recoveries"] == 1
    assert set(run_a["by_mode"]) == {"spot", "on-demand"}
    assert doc["totals"]["cost_usd"] == pytest.approx(3.57 + 1.64 + 6.0)

    r = cli("cost", "report", "--json", "--since", "2025-03-02")
    assert [x["id"] for x in json.loads(r.out)["runs"]] == [b]
    r = cli("cost", "report", "--json", "--recipe", "train-llm")
    assert [x["id"] for x in json.loads(r.out)["runs"]] == [a]
    r = cli("cost", "report", "--json", "--recipe", "train-llm", "--since", "2025-03-02")
    assert json.loads(r.out)["runs"] == []
    # an age reaching back before year 1000 (strftime does not zero-pad such years) still finds every run
    r = cli("cost", "report", "--json", "--since", "400000d")
    assert [x["id"] for x in json.loads(r.out)["runs"]] == [b, a], r
    assert json.loads(r.out)["filters"]["since"].startswith("0")


def test_report_table(cli, ledger, gpu_recipe):
    a, b = _seed(ledger)
    local_batch_infer_run(ledger, gpu_recipe, zero_segment=False, start=ts("10:00", "2025-03-06"),
                          end=ts("10:01:40", "2025-03-06"))
    r = cli("cost", "report")
    assert r.code == 0, r
    assert a in r.out and b in r.out and "tiny-infer" in r.out
    assert "on-demand+spot" in r.out  # run a used both pricing modes
    assert "3 run(s) (all runs): cost $11.21" in r.out
    assert "cost compare --run" in r.out  # hint for the $0 local run
    r = cli("cost", "report", "--recipe", "nope")
    assert r.code == 0 and "no runs" in r.out


# ---------------------------------------------------------------- compare

def test_compare_json(cli, shared_catalog):
    r = cli("cost", "compare", "--catalog", shared_catalog, "--json", "--api", "gpt-4o-mini",
            "--api", "claude-3-5-haiku", "--input-tokens", "2000", "--output-tokens", "500", "--utilization", "80%")
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert doc["request"]["input_tokens"] == 2000 and doc["utilization"] == pytest.approx(0.8)
    assert [a["name"] for a in doc["apis"]] == ["gpt-4o-mini", "claude-3-5-haiku"]
    assert {r["mode"] for r in doc["self_hosted"]} == {"spot", "on-demand"}
    assert len(doc["break_even"]) == len(doc["self_hosted"]) * 2
    assert doc["catalog"]["source"] == str(shared_catalog)


def test_compare_table_for_a_local_batch_infer_run(cli, ledger, gpu_recipe, shared_catalog):
    """A batch-infer run on the local target (as the local launch records it), then
    `rayctl cost compare --run RUN`: the measured throughput and cloud-priced tokens per dollar."""
    rid = local_batch_infer_run(ledger, gpu_recipe, zero_segment=True)
    r = cli("cost", "compare", "--run", rid, "--catalog", shared_catalog)
    assert r.code == 0, r
    assert "280.0 output tok/s measured" in r.out
    assert f"run {rid} (batch-infer, target local, succeeded)" in r.out
    assert "$0/h" in r.out and "cheapest cloud offers for A100-80GB:1" in r.out
    j = cli("cost", "compare", "--run", rid, "--catalog", shared_catalog, "--json")
    doc = json.loads(j.out)
    spot = next(x for x in doc["self_hosted"] if x["mode"] == "spot")
    assert spot["offer"]["cloud"] and spot["hourly_usd"] > 0
    # tokens per dollar in the table is the JSON figure, rounded
    assert f"{spot['tokens_per_usd']:,.0f}" in r.out


def test_plot_png(cli, shared_catalog, tmp_path):
    out = tmp_path / "chart.png"
    r = cli("cost", "compare", "--catalog", shared_catalog, "--plot", out)
    assert r.code == 0, r
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    from PIL import Image

    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] >= 600 and im.size[1] >= 200
    pixels = matplotlib.image.imread(out)
    assert pixels.ndim == 3 and pixels.std() > 0  # not a blank image
    assert f"chart written to {out}" in r.out


def test_plot_html_is_self_contained(cli, shared_catalog, tmp_path):
    out = tmp_path / "chart.HTML"
    r = cli("cost", "compare", "--catalog", shared_catalog, "--plot", out, "--json")
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert doc["plot"] == str(out)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    for forbidden in ("<script", "src=", "href=", "url(", "@import", "http://", "https://"):
        assert forbidden not in text.lower(), forbidden

    class Collect(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.rects, self.texts = 0, []

        def handle_starttag(self, tag, attrs):
            self.rects += tag == "rect"

        def handle_data(self, data):
            self.texts.append(data)

    p = Collect()
    p.feed(text)
    assert p.rects == len(doc["self_hosted"]) + len(doc["apis"])  # one bar each
    body = " ".join(p.texts)
    for a in doc["apis"]:
        assert a["name"] in body
    assert "vLLM" in body and "$ per 1M tokens" in body


# ---------------------------------------------------------------- bad input: exit 2, one clear message

@pytest.mark.parametrize("args, msg", [
    (["compare", "--api", "gpt4o-mini"], "Close matches: gpt-4o-mini"),
    (["compare", "--api", "gpt-4o-mini,,claude-3-5-haiku"], "an empty name"),
    (["compare", "--input-tokens", "-5"], "--input-tokens must be 0 or more"),
    (["compare", "--output-tokens", "0"], "--output-tokens must be 1 or more"),
    (["compare", "--throughput", "-10", "--gpu", "A100-80GB:1"], "--throughput must be a positive"),
    (["compare", "--throughput", "100"], "--throughput needs --gpu"),
    (["compare", "--utilization", "70"], "did you mean 0.7"),
    (["compare", "--utilization", "-0.1"], "--utilization must be more than 0"),
    (["compare", "--run", "no-such-run"], "no such run"),
    (["compare", "--run", "x", "--throughput", "5"], "pass one of them"),
    (["compare", "--plot", "chart.jpg"], "end the file name in .png (image) or .html"),
    (["compare", "--plot", "/nonexistent-dir/c.png"], "does not exist"),
    (["compare", "--gpu", "A100-80G:1x"], "--gpu A100-80G:1x"),
    (["compare", "--gpu", "B100:1"], "unknown accelerator 'B100'"),
    (["compare", "--model", "mistral-7b"], "no reference throughput ships"),
    (["compare", "--catalog", "/nonexistent"], "no such directory"),
    (["report", "--since", "last tuesday"], "is not a date"),
    (["report", "--since", "2025-02-30"], "is not a date"),
])
def test_bad_inputs_exit_2(cli, shared_catalog, args, msg, tmp_path):
    if "--catalog" not in args:
        args = args + ["--catalog", str(shared_catalog)] if args[0] == "compare" else args
    r = cli("cost", *args, cwd=tmp_path)
    assert r.code == 2, r
    assert msg in r.err, r.err
    assert_no_traceback(r)
    assert not list(tmp_path.glob("chart.*"))  # a bad --plot writes nothing


def test_empty_catalog_exit_2(cli, tmp_path):
    (tmp_path / "cat" / "aws").mkdir(parents=True)
    (tmp_path / "cat" / "aws" / "vms.csv").write_text("InstanceType,AcceleratorName,AcceleratorCount,Price,Region\n")
    r = cli("cost", "compare", "--catalog", tmp_path / "cat")
    assert r.code == 2 and "holds no GPU offers" in r.err, r
    assert_no_traceback(r)


def test_run_without_output_tokens_exit_2(cli, ledger, shared_catalog):
    rid = ledger.start_run(recipe="t", kind="train", target="local", started_at=ts("10:00"))
    ledger.finish(rid, "succeeded", ended_at=ts("10:05"))
    r = cli("cost", "compare", "--run", rid, "--gpu", "A100-80GB:1", "--catalog", shared_catalog)
    assert r.code == 2 and "recorded no output tokens" in r.err, r
    assert_no_traceback(r)


def test_cost_help_is_import_light(cli):
    import subprocess
    import sys

    code = ("import sys, runpy; sys.argv=['rayctl','--help'];\n"
            "try:\n    runpy.run_module('rayctl', run_name='__main__')\nexcept SystemExit: pass\n"
            "heavy=[m for m in ('genai_prices','matplotlib','pandas','ray','sky','torch') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "HEAVY []" in out, out
    r = cli("cost", "--help")
    assert r.code == 0 and "report" in r.out and "compare" in r.out
