"""Issue 9 item 9: catalog prices that are not finite or not plausible ($0.001-$1,000
per instance-hour) are skipped with one warning per file naming it and the count, and
every `--json` output stays strict JSON. A few real rows of the shared SkyPilot catalog
are copied into a temporary catalog and corrupted; run through the real CLI."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.conftest import assert_no_traceback

RECIPE = """\
name: a100-job
kind: batch-infer
resources:
  accelerators: A100:8
  spot: auto
budget: {max_hours: 2}
workload: {input: prompts.jsonl, output: out/}
"""

# (Price, SpotPrice) written into copies of a real p4d.24xlarge row, each in its own fake region.
BAD = {
    "zz-inf-1": ("inf", "14.0"),
    "zz-big-1": ("1e400", "13.0"),
    "zz-tiny-1": ("1e-300", "1e-300"),
    "zz-nan-1": ("40.0", "nan"),
    "zz-huge-1": ("5000", "-inf"),
}
N_BAD = 7  # inf, 1e400, 1e-300 x2, nan, 5000, -inf


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def bad_catalog(tmp_path, shared_catalog):
    src = (shared_catalog / "aws" / "vms.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(src)))
    header, body = rows[0], rows[1:]
    col = {c: i for i, c in enumerate(header)}
    a100 = [r for r in body if r[col["InstanceType"]] == "p4d.24xlarge" and r[col["SpotPrice"]]][:4]
    assert a100, "the shared catalog lost its p4d.24xlarge rows"
    out = [header, *a100]
    for region, (price, spot) in BAD.items():
        r = list(a100[0])
        r[col["Price"]], r[col["SpotPrice"]], r[col["Region"]] = price, spot, region
        r[col["AvailabilityZone"]] = region + "a"
        out.append(r)
    d = tmp_path / "catalog"
    (d / "aws").mkdir(parents=True)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(out)
    (d / "aws" / "vms.csv").write_text(buf.getvalue(), encoding="utf-8")
    good = [float(r[col["Price"]]) for r in a100] + [float(r[col["SpotPrice"]]) for r in a100]
    return d, min(good)


def _recipe(tmp_path):
    p = tmp_path / "a100.yaml"
    p.write_text(RECIPE)
    return p


def test_implausible_prices_are_skipped_with_one_warning(cli, tmp_path, bad_catalog):
    cat, cheapest_real = bad_catalog
    r = cli("plan", _recipe(tmp_path), "--catalog", cat, "--json")
    assert r.code == 0, r
    assert_no_traceback(r)
    doc = _strict(r.out)  # no Infinity / NaN tokens
    regions = {c["region"] for c in doc["candidates"]}
    # The fake regions survive only through their plausible prices: zz-inf-1 spot 14,
    # zz-big-1 spot 13, zz-nan-1 on-demand 40. Nothing at 1e-300, inf or 5000.
    assert not regions & {"zz-tiny-1", "zz-huge-1"}, regions
    for c in doc["candidates"]:
        assert 0.001 <= c["hourly_usd"] <= 1000, c
    assert doc["chosen"]["hourly_usd"] == pytest.approx(min(cheapest_real, 13.0))
    warnings = [line for line in r.err.splitlines() if "implausible" in line]
    assert len(warnings) == 1, r.err
    assert str(cat / "aws" / "vms.csv") in warnings[0] and f"skipped {N_BAD} implausible" in warnings[0], warnings


def test_gpus_and_human_plan_never_show_nan_or_inf(cli, tmp_path, bad_catalog):
    cat, _ = bad_catalog
    for args in (("gpus", "--catalog", cat, "--json"), ("gpus", "A100", "--catalog", cat, "--json")):
        r = cli(*args)
        assert r.code == 0, r
        _strict(r.out)
    r = cli("plan", _recipe(tmp_path), "--catalog", cat)
    assert r.code == 0, r
    for bad in ("$nan", "$inf", "inf/h", "nan/h"):
        assert bad not in r.out.lower(), r.out


def test_non_finite_vcpus_and_counts_are_skipped(cli, tmp_path, shared_catalog):
    d = tmp_path / "catalog" / "aws"
    d.mkdir(parents=True)
    header = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region,AvailabilityZone\n"
    (d / "vms.csv").write_text(header
                               + "p4d.24xlarge,A100,8.0,96.0,1152.0,40.0,14.0,us-east-1,use1-az1\n"
                               + "p4d.24xlarge,A100,inf,96.0,1152.0,39.0,13.0,us-east-2,use2-az1\n"
                               + "p4d.24xlarge,A100,8.0,nan,inf,38.0,12.0,us-west-2,usw2-az1\n")
    r = cli("plan", _recipe(tmp_path), "--catalog", tmp_path / "catalog", "--json")
    assert r.code == 0, r
    assert_no_traceback(r)
    doc = _strict(r.out)
    assert {c["region"] for c in doc["candidates"]} == {"us-east-1", "us-west-2"}
    assert "skipped 3 implausible" in r.err, r.err
    from rayctl.planning import catalog

    (west,) = [o for o in catalog.load(str(tmp_path / "catalog")).offers if o.region == "us-west-2"]
    assert west.vcpus is None and west.memory_gib is None


def test_plan_flags_reject_non_finite_and_absurd_values(cli, tmp_path, shared_catalog):
    p = _recipe(tmp_path)
    for flag, value in (("--budget", "inf"), ("--budget", "1e308"), ("--hours", "nan"), ("--hours", "inf"),
                        ("--hours", "1e300")):
        r = cli("plan", p, "--catalog", shared_catalog, f"{flag}={value}")
        assert r.code == 2, (flag, value, r)
        assert_no_traceback(r)
        assert flag in r.err, r.err
    r = cli("plan", p, "--catalog", shared_catalog, "--budget=nan")
    assert r.code == 2 and "--budget" in r.err, r


def test_planner_never_ranks_nan(tmp_path, shared_catalog):
    # The backstop in the planner itself, for callers that build a Recipe in code.
    from rayctl.planning import catalog, planner
    from rayctl import recipe as recipe_mod
    from rayctl.errors import InputError

    import dataclasses

    p = _recipe(tmp_path)
    r = recipe_mod.load(p)
    bad = dataclasses.replace(r, resources=dataclasses.replace(r.resources, checkpoint_minutes=float("nan")))
    cat = catalog.load(str(shared_catalog))
    with pytest.raises(InputError, match="checkpoint_minutes"):
        planner.plan(bad, cat, rate_fn=lambda *a: 0.02)
    ranked = planner.plan(r, cat, rate_fn=lambda c, reg, t: float("nan") if reg == "us-east-1" else 0.02)
    assert all(c.region != "us-east-1" or not c.spot for c in ranked.candidates)
    prices = [c.effective_hourly_usd for c in ranked.candidates if c.spot]
    assert prices == sorted(prices)


def test_live_aws_spot_prices_outside_the_band_are_skipped_with_one_warning(tmp_path):
    from rayctl.planning import catalog, price_cache

    d = tmp_path / "catalog" / "aws"
    d.mkdir(parents=True)
    (d / "vms.csv").write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region,AvailabilityZone\n"
        "p4d.24xlarge,A100,8.0,96.0,1152.0,40.0,14.0,us-east-1,use1-az1\n"
        "p4d.24xlarge,A100,8.0,96.0,1152.0,40.0,14.0,us-east-1,use1-az2\n"
        "p4d.24xlarge,A100,8.0,96.0,1152.0,40.0,14.0,us-east-1,use1-az4\n")
    cache = tmp_path / "cache"
    price_cache.write_csv(cache / "aws" / "spot_prices.csv",
                          ["InstanceType", "Region", "AvailabilityZone", "AvailabilityZoneName", "SpotPrice", "Timestamp"],
                          [{"InstanceType": "p4d.24xlarge", "Region": "us-east-1", "AvailabilityZone": z,
                            "AvailabilityZoneName": z, "SpotPrice": p, "Timestamp": "2026-12-01T00:00:00Z"}
                           for z, p in (("use1-az1", "12.5"), ("use1-az2", "1e-300"), ("use1-az4", "inf"),
                                        ("use1-az6", "nan"))])
    price_cache.write_meta({"aws": {"fetched_at": "2026-12-01T00:00:00Z"}}, cache)
    cat = price_cache.overlay(catalog.load_dir(tmp_path / "catalog", "t"), cache)
    spot = {o.zone: o.spot_price for o in cat.offers}
    assert spot == {"use1-az1": 12.5, "use1-az2": None, "use1-az4": None}, spot
    warnings = [w for w in cat.warnings if "implausible" in w]
    assert len(warnings) == 1 and "skipped 3 implausible spot price(s)" in warnings[0], cat.warnings
