"""`rayctl plan` picks the cheapest $/h that a brute force over the CSVs finds
(the cases the planner issue pins), spot and on-demand."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_no_traceback

from .bruteforce import cheapest, offers

CASES = ["A100:1", "A100:8", "A100-80GB:8", "H100:1", "H100:8", "L4:1"]


def _recipe(tmp_path, spec: str, spot: bool, extra: str = "") -> str:
    p = tmp_path / f"r-{spec.replace(':', '-')}-{spot}.yaml"
    p.write_text(f"name: pin\nkind: train\nresources:\n  accelerators: {spec}\n  spot: {str(spot).lower()}\n{extra}")
    return str(p)


@pytest.mark.parametrize("spot", [True, False], ids=["spot", "on-demand"])
@pytest.mark.parametrize("spec", CASES)
def test_plan_picks_bruteforce_cheapest(cli, tmp_path, shared_catalog, spec, spot):
    name, n = spec.split(":")
    expected = cheapest(shared_catalog, name, int(n), spot)
    assert expected is not None
    r = cli("plan", _recipe(tmp_path, spec, spot), "--catalog", shared_catalog, "--json")
    assert r.code == 0, r
    assert_no_traceback(r)
    doc = json.loads(r.out)
    chosen = doc["chosen"]
    assert chosen["hourly_usd_per_node"] == pytest.approx(expected, abs=1e-6)
    assert chosen["accelerator"].lower() == name.lower() and chosen["accelerator_count"] == int(n)
    assert chosen["spot"] is spot
    # The chosen offer is one the brute force found at that price.
    best = {(c, reg, z or "", it) for p, c, reg, z, it in offers(shared_catalog, name, int(n), spot)
            if abs(p - expected) < 1e-6}
    assert (chosen["cloud"], chosen["region"], chosen["zone"] or "", chosen["instance_type"]) in best
    # Every feasible offer is ranked, cheapest first.
    prices = [c["hourly_usd"] for c in doc["candidates"]]
    assert prices == sorted(prices)
    assert len(prices) == doc["feasible"] == len({(p, c, reg, z, it) for p, c, reg, z, it in
                                                  offers(shared_catalog, name, int(n), spot)})


def test_candidates_cover_every_brute_force_offer(cli, tmp_path, shared_catalog):
    r = cli("plan", _recipe(tmp_path, "H100:8", False), "--catalog", shared_catalog, "--json")
    doc = json.loads(r.out)
    got = sorted((round(c["hourly_usd_per_node"], 6), c["cloud"], c["region"], c["zone"] or "", c["instance_type"])
                 for c in doc["candidates"])
    want = sorted((round(p, 6), c, reg, z, it) for p, c, reg, z, it in offers(shared_catalog, "H100", 8, False))
    assert got == want


def test_gcp_offer_is_host_plus_accelerator_in_same_zone(cli, tmp_path, shared_catalog):
    r = cli("plan", _recipe(tmp_path, "A100:8", True, "  clouds: [gcp]\n"), "--catalog", shared_catalog, "--json")
    assert r.code == 0, r
    doc = json.loads(r.out)
    expected = min(offers(shared_catalog, "A100", 8, True) and
                   [o for o in offers(shared_catalog, "A100", 8, True) if o[1] == "gcp"])
    assert doc["chosen"]["cloud"] == "gcp"
    assert doc["chosen"]["instance_type"] == "a2-highgpu-8g"
    assert doc["chosen"]["hourly_usd_per_node"] == pytest.approx(expected[0], abs=1e-6)
    assert doc["chosen"]["zone"] == expected[3]
