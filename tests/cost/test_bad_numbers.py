"""Issue 9 item 9 for `rayctl cost`: non-finite and absurd numbers in flags are exit 2
naming the flag; `cost compare --json` stays strict JSON on a catalog with broken
prices; no 300-digit numbers on screen. Through the real CLI."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import assert_no_traceback


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value", ["1e308", "nan", "inf", "-inf", "1e12", "0", "-5"])
def test_throughput_must_be_finite_and_plausible(cli, shared_catalog, value):
    r = cli("cost", "compare", "--gpu", "A100:8", f"--throughput={value}", "--catalog", shared_catalog)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "--throughput must be a positive, finite number" in r.err, r.err


@pytest.mark.parametrize("flag,value", [("--input-tokens", str(10 ** 30)), ("--output-tokens", str(10 ** 30)),
                                        ("--utilization", "nan"), ("--utilization", "inf%")])
def test_token_and_utilization_flags_are_bounded(cli, shared_catalog, flag, value):
    r = cli("cost", "compare", "--gpu", "A100:8", "--throughput", "1000", f"{flag}={value}",
            "--catalog", shared_catalog)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert flag in r.err, r.err


@pytest.mark.parametrize("age", ["99999999999999999999d", "9999999w", "0001-01-01T00:00:00+14:00"])
def test_since_far_in_the_past_is_an_input_error(cli, age):
    r = cli("cost", "report", "--since", age)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "--since" in r.err, r.err


def test_largest_throughput_prints_sane_numbers(cli, shared_catalog):
    r = cli("cost", "compare", "--gpu", "A100:8", "--throughput", "10000000", "--catalog", shared_catalog)
    assert r.code == 0, r
    longest = max((len(m) for m in re.findall(r"[\d,.]+", r.out)), default=0)
    assert longest < 30, r.out


def test_compare_json_is_strict_on_a_catalog_with_broken_prices(cli, tmp_path):
    d = tmp_path / "catalog" / "aws"
    d.mkdir(parents=True)
    d.joinpath("vms.csv").write_text(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,SpotPrice,Region,AvailabilityZone\n"
        "p4d.24xlarge,A100,8.0,96.0,1152.0,inf,1e-300,us-east-1,use1-az1\n"
        "p4d.24xlarge,A100,8.0,96.0,1152.0,1e400,nan,us-east-2,use2-az1\n"
        "p4d.24xlarge,A100,8.0,96.0,1152.0,32.77,12.5,us-west-2,usw2-az1\n")
    r = cli("cost", "compare", "--gpu", "A100:8", "--throughput", "5000", "--catalog", tmp_path / "catalog", "--json")
    assert r.code == 0, r
    assert_no_traceback(r)
    doc = _strict(r.out)
    hourly = {row["mode"]: row["hourly_usd"] for row in doc["self_hosted"]}
    assert hourly == {"spot": 12.5, "on-demand": 32.77}, hourly
    assert [w for w in doc["catalog"]["warnings"] if "skipped 4 implausible" in w], doc["catalog"]["warnings"]


@pytest.mark.parametrize("args,flag", [
    (("pricing", "refresh", "--timeout", "inf"), "--timeout"),
    (("pricing", "refresh", "--timeout", "nan"), "--timeout"),
    (("runs", "--limit", str(10 ** 30)), "--limit"),
])
def test_other_numeric_flags_refuse_absurd_values(cli, args, flag):
    r = cli(*args)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert flag in r.err, r.err
