"""Preemption-aware ranking: ledger history moves the plan off a zone that keeps
getting preempted once its effective price crosses the next offer's.

Rates are estimated per (cloud, region, instance type) -- the planner's `rate_fn` key --
so the cheapest zone's region (both us-east-1 zones) carries the evidence and the plan
moves to the next offer in another region (us-west-2).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys

import pytest

from cloudkit import RAYCTL
from rayctl.planning import preemption
from rayctl.ledger import Ledger

pytestmark = pytest.mark.timeout(120)

RECIPE = """\
name: pre
kind: train
resources:
  accelerators: A100:8
  spot: true
  clouds: [aws]
  checkpoint_minutes: 120
  restart_minutes: 10
"""

SPOT_HOURS = 5.0


def _history(home, k):
    """A ledger with one 5 h spot run on p4d.24xlarge in us-east-1 and k preemptions there."""
    led = Ledger(home / "ledger.db")
    rid = led.start_run(recipe="pre", kind="train", target="cloud")
    t0 = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    led.open_segment(rid, cloud="aws", region="us-east-1", zone="use1-az1", instance_type="p4d.24xlarge",
                     spot=True, nodes=1, hourly_usd_per_node=5.0, started_at=iso(t0))
    led.close_segment(rid, ended_at=iso(t0 + dt.timedelta(hours=SPOT_HOURS)))
    for i in range(k):
        led.add_event(rid, "preemption", cloud="aws", region="us-east-1", zone="use1-az1",
                      instance_type="p4d.24xlarge", at=iso(t0 + dt.timedelta(minutes=10 * i)))
    led.close()


def _plan(mini_catalog, recipe, home, *flags):
    env = dict(os.environ, RAYCTL_HOME=str(home), HOME=str(home / "user"), COLUMNS="200")
    env.pop("RAYCTL_CATALOG", None)
    p = subprocess.run([*RAYCTL, "plan", str(recipe), "--catalog", str(mini_catalog),
                        "--json", *flags], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_history_estimator(tmp_path):
    _history(tmp_path, 3)
    h = preemption.history(tmp_path / "ledger.db")
    assert h.events == {("aws", "us-east-1", "p4d.24xlarge"): 3}
    assert h.hours[("aws", "us-east-1", "p4d.24xlarge")] == pytest.approx(SPOT_HOURS)
    assert h.node_rate("aws", "us-east-1", "p4d.24xlarge") == pytest.approx(4 / (50 + SPOT_HOURS))
    assert h.node_rate("aws", "us-west-2", "p4d.24xlarge") == pytest.approx(1 / 50)  # the prior
    assert h.rate_fn(nodes=4)("aws", "us-west-2", "p4d.24xlarge") == pytest.approx(4 / 50)
    assert not preemption.history(tmp_path / "missing.db").any


def test_plan_moves_off_the_preempted_zone_when_effective_price_crosses(tmp_path, mini_catalog):
    recipe = tmp_path / "pre.yaml"
    recipe.write_text(RECIPE)
    lost = (10 + 120 / 2) / 60.0  # hours lost per interruption: restart + half a checkpoint interval
    east, west = 5.0, 6.0
    west_eff = west * (1 + (1 / 50) * lost)
    # smallest k with 5 x (1 + (1+k)/(50+5) x lost) > west_eff
    k_cross = math.floor((west_eff / east - 1) / lost * (50 + SPOT_HOURS) - 1) + 1

    home = tmp_path / "h0"
    home.mkdir()
    doc = _plan(mini_catalog, recipe, home)
    assert doc["ranking"] == "sticker" and doc["chosen"]["zone"] == "use1-az1"  # no ledger: sticker prices

    for k, zone in ((k_cross - 1, "use1-az1"), (k_cross, "usw2-az1")):
        home = tmp_path / f"h{k}"
        home.mkdir()
        _history(home, k)
        doc = _plan(mini_catalog, recipe, home)
        assert doc["ranking"] == "effective"
        assert doc["chosen"]["zone"] == zone, (k, doc["candidates"][:3])
        c = {x["zone"]: x for x in doc["candidates"]}
        assert c["use1-az1"]["hourly_usd"] == 5.0  # sticker price kept beside the effective one
        assert c["use1-az1"]["effective_hourly_usd"] == pytest.approx(
            5.0 * (1 + (1 + k) / (50 + SPOT_HOURS) * lost), rel=1e-4)
        assert c["usw2-az1"]["effective_hourly_usd"] == pytest.approx(west_eff, rel=1e-4)
        # --sticker ignores the history
        assert _plan(mini_catalog, recipe, home, "--sticker")["chosen"]["zone"] == "use1-az1"


def test_plan_table_says_which_ranking(tmp_path, mini_catalog):
    recipe = tmp_path / "pre.yaml"
    recipe.write_text(RECIPE)
    _history(tmp_path, 20)
    env = dict(os.environ, RAYCTL_HOME=str(tmp_path), HOME=str(tmp_path / "user"), COLUMNS="200")
    p = subprocess.run([*RAYCTL, "plan", str(recipe), "--catalog", str(mini_catalog)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "effective $/h" in p.stdout and "$/h cluster" in p.stdout
    assert "ranking: effective $/h (preemption-aware: 20 preemption(s) over 5.0 spot node-hours" in p.stdout
    assert "prior Gamma(1 event, 50 node-hours)" in p.stdout
