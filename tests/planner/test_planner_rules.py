"""Planner rules on small catalogs written in the test (SkyPilot's CSV layouts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rayctl.planning import catalog as catalog_mod
from rayctl.planning import planner
from rayctl import recipe
from rayctl.errors import InputError, NoPlanError
from tests.conftest import REPO, assert_no_traceback

AWS_V8 = ("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,"
          "AvailabilityZone,Arch\n")
LAMBDA = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice\n"
GCP = "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice\n"


def make_catalog(root: Path) -> Path:
    (root / "aws").mkdir(parents=True)
    (root / "aws" / "vms.csv").write_text(AWS_V8 + "\n".join([
        "p5.48xlarge,H100,8.0,192.0,2048.0,,40.00,12.00,us-east-1,use1-az1,x86_64",
        "p5.48xlarge,H100,8.0,192.0,2048.0,,40.00,10.00,us-east-1,use1-az2,x86_64",
        "p5.48xlarge,H100,8.0,192.0,2048.0,,44.00,9.00,eu-west-1,euw1-az1,x86_64",
        "p5.48xlarge,H100,8.0,192.0,2048.0,,44.00,,ap-south-1,aps1-az1,x86_64",
        "g6.xlarge,L4,1.0,4.0,16.0,,0.80,0.30,us-east-1,use1-az1,x86_64",
        "g6.4xlarge,L4,1.0,16.0,64.0,,1.32,0.30,us-east-1,use1-az1,x86_64",
        "m5.large,,,2.0,8.0,,0.10,0.04,us-east-1,use1-az1,x86_64",
    ]) + "\n")
    (root / "lambda").mkdir()
    (root / "lambda" / "vms.csv").write_text(LAMBDA + "\n".join([
        "gpu_8x_h100,H100,8.0,208.0,1800.0,24.00,us-west-1,,",
        "gpu_8x_h100,H100,8.0,208.0,1800.0,24.00,us-east-1,,",
    ]) + "\n")
    (root / "gcp").mkdir()
    (root / "gcp" / "vms.csv").write_text(GCP + "\n".join([
        "a3-highgpu-8g,208.0,1872.0,,,,us-central1,us-central1-a,10.00,3.00",
        "a3-highgpu-8g,208.0,1872.0,,,,us-central1,us-central1-b,10.00,3.00",
        ",,,H100,8,,us-central1,us-central1-a,30.00,8.00",
        # the accelerator without a host in this zone is no offer
        ",,,H100,8,,us-central1,us-central1-c,1.00,0.50",
    ]) + "\n")
    (root / "SOURCE.md").write_text("Test rows. Taken on 2026-11-20.\n")
    return root


@pytest.fixture
def cat(tmp_path):
    return catalog_mod.load(str(make_catalog(tmp_path / "cat")))


def rec(text: str):
    return recipe.loads(("name: t\nkind: train\n" + text).encode(), "t.yaml")


def prices(p):
    return [(c.cloud, c.region, c.zone, c.hourly_usd) for c in p.candidates]


def test_spot_ranking_gcp_sum_and_failover_order(cat):
    p = planner.plan(rec("resources: {accelerators: H100:8, spot: true}\n"), cat)
    assert prices(p) == [
        ("aws", "eu-west-1", "euw1-az1", 9.0),
        ("aws", "us-east-1", "use1-az2", 10.0),
        ("gcp", "us-central1", "us-central1-a", 11.0),  # host 3 + accelerator 8, same zone
        ("aws", "us-east-1", "use1-az1", 12.0),
    ]
    assert p.catalog_as_of == "2026-11-20"


def test_on_demand_and_ties_are_deterministic(cat):
    p = planner.plan(rec("resources: {accelerators: H100:8}\n"), cat)
    assert [c.hourly_usd for c in p.candidates] == [24.0, 24.0, 40.0, 40.0, 40.0, 44.0, 44.0]
    assert [(c.cloud, c.region) for c in p.candidates[:2]] == [("lambda", "us-east-1"), ("lambda", "us-west-1")]


def test_spot_auto_lists_spot_first_then_on_demand(cat):
    p = planner.plan(rec("resources: {accelerators: H100:8, spot: auto}\n"), cat)
    modes = [c.spot for c in p.candidates]
    assert modes == [True] * 4 + [False] * 7
    assert p.candidates[4].hourly_usd == 24.0


def test_constraints(cat):
    p = planner.plan(rec("resources: {accelerators: H100:8, spot: true, clouds: [aws], exclude_regions: [eu-west-1]}\n"), cat)
    assert prices(p) == [("aws", "us-east-1", "use1-az2", 10.0), ("aws", "us-east-1", "use1-az1", 12.0)]
    p = planner.plan(rec("resources: {accelerators: H100:8, regions: [us-central1]}\n"), cat)
    assert prices(p) == [("gcp", "us-central1", "us-central1-a", 40.0)]
    p = planner.plan(rec("resources: {accelerators: H100:8, spot: true, max_hourly_usd: 10}\n"), cat)
    assert [c.hourly_usd for c in p.candidates] == [9.0, 10.0]
    p = planner.plan(rec("resources: {accelerators: L4:1, cpus: 8+}\n"), cat)
    assert [c.instance_type for c in p.candidates] == ["g6.4xlarge"]
    p = planner.plan(rec("resources: {accelerators: L4:1, memory: 16}\n"), cat)
    assert [c.instance_type for c in p.candidates] == ["g6.xlarge"]


def test_nodes_multiply_cluster_price_and_cap(cat):
    p = planner.plan(rec("resources: {accelerators: H100:8, spot: true, nodes: 4, max_hourly_usd: 40}\n"), cat)
    assert [(c.hourly_usd_per_node, c.hourly_usd) for c in p.candidates] == [(9.0, 36.0), (10.0, 40.0)]


def test_alternatives_are_ranked_together(cat):
    p = planner.plan(rec("resources: {accelerators: [H100:8, L4:1], spot: true}\n"), cat)
    assert [c.accelerator for c in p.candidates][:2] == ["L4", "L4"]
    assert {c.accelerator for c in p.candidates} == {"H100", "L4"}


def test_prefer_regions_within_pct(cat):
    p = planner.plan(rec("resources: {accelerators: H100:8, spot: true, prefer_regions: [us-east-1]}\n"), cat)
    # us-east-1 at 10.0 is within 10% of 9.0 (<= 9.9? no): stays second
    assert p.chosen.region == "eu-west-1"
    p = planner.plan(rec("resources: {accelerators: H100:8, spot: true, prefer_regions: [us-east-1], "
                         "prefer_within_pct: 15}\n"), cat)
    assert [c.region for c in p.candidates][:2] == ["us-east-1", "eu-west-1"]
    assert p.chosen.zone == "use1-az2"


def test_budget_filters_and_fails_with_what_would_fit(cat):
    p = planner.plan(rec("resources: {accelerators: H100:8, spot: true}\nbudget: {max_usd: 21, max_hours: 2}\n"), cat)
    assert [c.hourly_usd for c in p.candidates] == [9.0, 10.0]
    assert p.estimate_usd == 18.0
    with pytest.raises(NoPlanError) as e:
        planner.plan(rec("resources: {accelerators: H100:8, spot: true}\nbudget: {max_usd: 10, max_hours: 4}\n"), cat)
    msg = str(e.value)
    assert "cheapest feasible offer is aws/eu-west-1/euw1-az1 p5.48xlarge H100:8 spot at $9.0000/h" in msg
    assert "$36.00 for 4 h" in msg and "buys 1.11 h" in msg
    assert e.value.exit_code == 3


def test_no_offer_messages(cat):
    with pytest.raises(NoPlanError, match=r"H100 is offered with 8 per node"):
        planner.plan(rec("resources: {accelerators: H100:3}\n"), cat)
    with pytest.raises(NoPlanError, match=r"A100 is not in this catalog"):
        planner.plan(rec("resources: {accelerators: A100:1}\n"), cat)
    with pytest.raises(NoPlanError, match=r"ruled out \(7 by cloud"):
        planner.plan(rec("resources: {accelerators: H100:8, spot: true, clouds: [runpod]}\n"), cat)
    with pytest.raises(InputError, match="resources.accelerators"):
        planner.plan(rec("workload: {}\n"), cat)


def test_cli_exit_codes_and_json_shape(cli, tmp_path):
    root = make_catalog(tmp_path / "cat")
    r1 = tmp_path / "a.yaml"
    r1.write_text("name: a\nkind: serve\nresources: {accelerators: H100:8, spot: true}\nbudget: {max_hours: 4}\n")
    r = cli("plan", r1, "--catalog", root, "--json")
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert list(doc)[:8] == ["recipe", "kind", "nodes", "catalog", "chosen", "candidates", "estimate", "spot"]
    assert doc["chosen"] == doc["candidates"][0]
    assert doc["estimate"] == {"hours": 4, "usd": 36.0}
    assert doc["catalog"] == {"source": str(root), "as_of": "2026-11-20"}
    over = cli("plan", r1, "--catalog", root, "--json", "--budget", "20")
    assert over.code == 3 and "no offer fits the budget of $20.00" in over.err
    assert json.loads(over.out)["error"]["exit_code"] == 3
    assert_no_traceback(over)


def test_json_is_byte_identical_across_runs(cli, tmp_path, shared_catalog):
    r1 = tmp_path / "a.yaml"
    r1.write_text("name: a\nkind: train\nresources: {accelerators: [A100:8, H100:8], spot: auto}\n")
    outs = {cli("plan", r1, "--catalog", shared_catalog, "--json").out for _ in range(3)}
    assert len(outs) == 1


def test_catalog_source_order(cli, tmp_path, monkeypatch):
    root = make_catalog(tmp_path / "cat")
    r1 = tmp_path / "a.yaml"
    r1.write_text("name: a\nkind: train\nresources: {accelerators: H100:8}\n")
    home = tmp_path / "home"
    # 1. nothing configured: the shipped snapshot, with an age warning once it is over 7 days old
    r = cli("plan", r1, "--json", env={"HOME": str(home)})
    assert r.code == 0, r
    assert json.loads(r.out)["catalog"] == {"source": "rayctl-shipped:pricing", "as_of": "2026-11-25"}
    import datetime as dt

    age = (dt.datetime.now(dt.timezone.utc).date() - dt.date(2026, 11, 25)).days
    assert ("2026-11-25); prices may have changed" in r.err) == (age > catalog_mod.STALE_DAYS), r.err
    # 2. SkyPilot's cache wins over the shipped sheet for the clouds it holds (lambda here)
    sky = home / ".sky" / "catalogs" / "v8" / "lambda"
    sky.mkdir(parents=True)
    (sky / "vms.csv").write_text((root / "lambda" / "vms.csv").read_text())
    r = cli("plan", r1, "--json", env={"HOME": str(home)})
    cat = json.loads(r.out)["catalog"]
    assert cat["source"] == "auto: lambda from skypilot-cache:~/.sky/catalogs/v8; 10 clouds from rayctl-shipped:pricing"
    assert cat["sources"]["lambda"]["source"] == "skypilot-cache:~/.sky/catalogs/v8"
    # 3. $RAYCTL_CATALOG wins over the cache; 4. --catalog wins over everything
    r = cli("plan", r1, "--json", env={"HOME": str(home), "RAYCTL_CATALOG": str(root)})
    assert json.loads(r.out)["catalog"]["source"] == str(root)
    r = cli("plan", r1, "--json", "--catalog", str(sky.parent), env={"HOME": str(home), "RAYCTL_CATALOG": str(root)})
    assert json.loads(r.out)["catalog"]["source"] == str(sky.parent)
    bad = cli("plan", r1, env={"RAYCTL_CATALOG": str(tmp_path / "missing")})
    assert bad.code == 2 and "$RAYCTL_CATALOG" in bad.err


@pytest.mark.parametrize("mutate,needle", [
    (lambda t: t.replace("40.00,12.00", "forty,12.00"), "aws/vms.csv:2: field 'Price' is 'forty', not a number"),
    (lambda t: t.replace("InstanceType,", "Instance,"), "missing column(s) InstanceType"),
    (lambda t: t + "p5.48xlarge,H100\n", "row has 2 fields"),
])
def test_bad_catalog_files_exit_2(cli, tmp_path, mutate, needle):
    root = make_catalog(tmp_path / "cat")
    f = root / "aws" / "vms.csv"
    f.write_text(mutate(f.read_text()))
    r1 = tmp_path / "a.yaml"
    r1.write_text("name: a\nkind: train\nresources: {accelerators: H100:8}\n")
    r = cli("plan", r1, "--catalog", root)
    assert r.code == 2, r
    assert needle in r.err
    assert_no_traceback(r)


def test_non_utf8_catalog(cli, tmp_path):
    root = make_catalog(tmp_path / "cat")
    (root / "aws" / "vms.csv").write_bytes(AWS_V8.encode() + b"p5,H\xff100,8,1,1,,1,1,r,z,x\n")
    r1 = tmp_path / "a.yaml"
    r1.write_text("name: a\nkind: train\nresources: {accelerators: H100:8}\n")
    r = cli("plan", r1, "--catalog", root)
    assert r.code == 2 and "not UTF-8" in r.err
    assert_no_traceback(r)


def test_duplicate_rows_merge_and_zero_prices_are_dropped(tmp_path):
    root = tmp_path / "cat"
    (root / "vast").mkdir(parents=True)
    (root / "vast" / "vms.csv").write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region\n"
        "1x-H100,H100,1,32,64.0,,1.80,0.00,\"Czechia, CZ, EU\"\n"
        "1x-H100,H100,1,32,64.0,,1.70,,\"Czechia, CZ, EU\"\n")
    c = catalog_mod.load(str(root))
    assert len(c.offers) == 1 and c.offers[0].price == 1.70 and c.offers[0].spot_price is None
    assert c.warnings == ["vast: ignored 1 price(s) of 0 or less (not a real price)"]


def test_plan_and_help_do_not_import_heavy_modules(tmp_path, shared_catalog):
    r1 = tmp_path / "a.yaml"
    r1.write_text("name: a\nkind: train\nresources: {accelerators: H100:8}\n")
    for args in (["--help"], ["plan", str(r1), "--catalog", str(shared_catalog), "--json"], ["validate", str(r1)]):
        code = ("import runpy, sys\nsys.argv = ['rayctl', *sys.argv[1:]]\n"
                "try:\n    runpy.run_module('rayctl', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                "heavy = sorted(m for m in ('ray', 'sky', 'boto3', 'torch', 'pandas', 'numpy', 'transformers')"
                " if m in sys.modules)\nprint('HEAVY', heavy, file=sys.stderr)\n")
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
        assert "HEAVY []" in p.stderr, (args, p.stderr[-500:])


def test_gpus_listing(cli, tmp_path, shared_catalog):
    r = cli("gpus", "--catalog", shared_catalog, "--json")
    doc = json.loads(r.out)
    h100 = next(a for a in doc["accelerators"] if a["accelerator"] == "H100")
    assert 8 in h100["counts"] and "aws" in h100["clouds"]
    r = cli("gpus", "h100", "--spot", "--count", "8", "--catalog", shared_catalog, "--json")
    assert r.code == 0, r
    offers = json.loads(r.out)["offers"]
    assert offers and all(o["accelerator_count"] == 8 and o["spot_hourly_usd"] for o in offers)
    assert len({(o["cloud"], o["region"]) for o in offers}) == len(offers)  # cheapest per region
    per_region = [o["spot_hourly_usd"] for o in offers]
    assert per_region == sorted(per_region)
    r = cli("gpus", "H10", "--catalog", shared_catalog)
    assert r.code == 2 and "did you mean" in r.err
    assert_no_traceback(r)
    r = cli("gpus", "--catalog", shared_catalog)
    assert r.code == 0 and "H100" in r.out


def test_gpus_spot_lists_only_spot_offers_and_says_when_there_are_none(cli, shared_catalog):
    r = cli("gpus", "--spot", "--catalog", shared_catalog, "--json")
    assert r.code == 0, r
    rows = json.loads(r.out)["accelerators"]
    assert rows and all(a["min_spot_hourly_usd_per_gpu"] is not None for a in rows)
    r = cli("gpus", "H100", "--spot", "--count", "3", "--catalog", shared_catalog)
    assert r.code == 3, r  # no feasible offer, as for `plan`
    assert_no_traceback(r)
    assert "no H100:3 spot offers" in r.err
