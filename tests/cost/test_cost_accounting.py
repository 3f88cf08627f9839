"""Per-run accounting on a constructed ledger: every expected dollar is worked out by hand."""

from __future__ import annotations

import datetime as dt

import pytest

from costhelpers import ts
from rayctl.cost import accounting
from rayctl.errors import InputError


def _spot_run_with_recoveries(led) -> str:
    """2 nodes; spot 10:00-11:30 at $1.19/node, preempted; on-demand 11:40-12:10 at $1.64/node
    (the 10 minutes between are not billed); spot again 12:10-13:55 at $2.011/node."""
    rid = led.start_run(recipe="train-llm", kind="train", target="cloud", status="running", started_at=ts("09:58"),
                        nodes=2, spot=True, cloud="gcp", region="us-east5", instance_type="a2-ultragpu-1g")
    led.open_segment(rid, cloud="runpod", region="CA", instance_type="1x_A100-80GB_SECURE", spot=True, nodes=2,
                     hourly_usd_per_node=1.19, started_at=ts("10:00"))
    led.close_segment(rid, ended_at=ts("11:30"))
    led.add_event(rid, "preempted", cloud="runpod", region="CA", at=ts("11:30"))
    led.open_segment(rid, cloud="runpod", region="CA", instance_type="1x_A100-80GB_SECURE", spot=False, nodes=2,
                     hourly_usd_per_node=1.64, started_at=ts("11:40"))
    led.open_segment(rid, cloud="gcp", region="us-east5", instance_type="a2-ultragpu-1g", spot=True, nodes=2,
                     hourly_usd_per_node=2.011, started_at=ts("12:10"))  # closes the on-demand one at 12:10
    led.update(rid, rows=40_000, input_tokens=3_000_000, output_tokens=1_000_000)
    led.finish(rid, "succeeded", ended_at=ts("13:55"))
    return rid


def test_spot_multi_node_with_recoveries(ledger):
    rid = _spot_run_with_recoveries(ledger)
    r = accounting.run_cost(ledger, ledger.get(rid))
    assert r["cost_basis"] == "segments"
    assert r["recoveries"] == 2
    assert [s["mode"] for s in r["segments"]] == ["spot", "on-demand", "spot"]
    assert [s["node_hours"] for s in r["segments"]] == pytest.approx([3.0, 1.0, 3.5])
    assert [s["cost_usd"] for s in r["segments"]] == pytest.approx([2 * 1.5 * 1.19, 2 * 0.5 * 1.64, 2 * 1.75 * 2.011])
    expected = 3.57 + 1.64 + 7.0385
    assert r["cost_usd"] == pytest.approx(expected)
    assert r["by_mode"]["spot"] == pytest.approx({"node_hours": 6.5, "cost_usd": 3.57 + 7.0385})
    assert r["by_mode"]["on-demand"] == pytest.approx({"node_hours": 1.0, "cost_usd": 1.64})
    assert r["billed_node_hours"] == pytest.approx(7.5)
    # the ledger's own figure (written at finish) agrees
    assert r["recorded_cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert ledger.cost_of(rid) == pytest.approx(r["cost_usd"])
    assert r["tokens"] == 4_000_000
    assert r["tokens_per_usd"] == pytest.approx(4_000_000 / expected)
    assert r["usd_per_1m_tokens"] == pytest.approx(expected / 4)


def test_on_demand_single_node(ledger):
    rid = ledger.start_run(recipe="nightly", kind="batch-infer", target="cloud", started_at=ts("08:00"))
    ledger.open_segment(rid, cloud="aws", region="us-east-1", instance_type="p4de.24xlarge", spot=False, nodes=1,
                        hourly_usd_per_node=3.0, started_at=ts("08:00"))
    ledger.update(rid, input_tokens=500_000, output_tokens=100_000, rows=1000)
    ledger.finish(rid, "succeeded", ended_at=ts("10:00"))
    r = accounting.run_cost(ledger, ledger.get(rid))
    assert r["cost_usd"] == pytest.approx(6.0)
    assert r["by_mode"] == {"on-demand": pytest.approx({"node_hours": 2.0, "cost_usd": 6.0})}
    assert r["recoveries"] == 0
    assert r["tokens_per_usd"] == pytest.approx(100_000)


def test_open_segment_billed_up_to_now(ledger):
    rid = ledger.start_run(recipe="serve-llm", kind="serve", target="cloud", status="serving", started_at=ts("09:00"))
    ledger.open_segment(rid, spot=True, nodes=3, hourly_usd_per_node=2.0, started_at=ts("09:00"))
    r = accounting.run_cost(ledger, ledger.get(rid), at=ts("09:30"))
    assert r["segments"][0]["open"] is True
    assert r["cost_usd"] == pytest.approx(3 * 0.5 * 2.0)


def test_run_without_segments_uses_run_price_and_local_costs_nothing(ledger):
    rid = ledger.start_run(recipe="legacy", kind="train", target="cloud", started_at=ts("07:00"), hourly_usd=2.0,
                           spot=False)
    ledger.update(rid, status="succeeded", ended_at=ts("07:30"), duration_s=1800.0, output_tokens=10)
    r = accounting.run_cost(ledger, ledger.get(rid))
    assert (r["cost_basis"], r["cost_usd"]) == ("run", pytest.approx(1.0))
    assert r["by_mode"] == {"on-demand": pytest.approx({"node_hours": 0.5, "cost_usd": 1.0})}

    loc = ledger.start_run(recipe="tiny", kind="batch-infer", target="local", started_at=ts("07:00"))
    ledger.update(loc, input_tokens=100, output_tokens=200)
    ledger.finish(loc, "succeeded", ended_at=ts("07:01"))
    r = accounting.run_cost(ledger, ledger.get(loc))
    assert (r["cost_basis"], r["cost_usd"], r["tokens"]) == ("none", 0.0, 300)
    assert r["tokens_per_usd"] is None and r["usd_per_1m_tokens"] == 0.0


def test_report_filters_and_totals(ledger):
    a = _spot_run_with_recoveries(ledger)  # 2025-03-01, train-llm
    b = ledger.start_run(recipe="nightly", kind="batch-infer", target="cloud", started_at=ts("08:00", "2025-03-05"))
    ledger.open_segment(b, spot=False, hourly_usd_per_node=3.0, started_at=ts("08:00", "2025-03-05"))
    ledger.update(b, input_tokens=500_000, output_tokens=100_000, rows=1000)
    ledger.finish(b, "succeeded", ended_at=ts("10:00", "2025-03-05"))
    c = ledger.start_run(recipe="nightly", kind="batch-infer", target="local", started_at=ts("08:00", "2025-03-06"))
    ledger.finish(c, "failed", "job failed", ended_at=ts("08:01", "2025-03-06"))

    everything = accounting.report(ledger)
    assert [r["id"] for r in everything["runs"]] == [c, b, a]  # newest first
    t = everything["totals"]
    assert t["runs"] == 3 and t["by_status"] == {"succeeded": 2, "failed": 1}
    assert t["cost_usd"] == pytest.approx(12.2485 + 6.0)
    assert t["by_mode"]["on-demand"]["cost_usd"] == pytest.approx(1.64 + 6.0)
    assert t["recoveries"] == 2
    assert t["tokens"] == 4_600_000
    assert t["tokens_per_usd"] == pytest.approx(4_600_000 / 18.2485)

    since = accounting.parse_since("2025-03-05")
    assert [r["id"] for r in accounting.report(ledger, since=since)["runs"]] == [c, b]
    assert [r["id"] for r in accounting.report(ledger, recipe="nightly")["runs"]] == [c, b]
    assert [r["id"] for r in accounting.report(ledger, recipe="train-llm")["runs"]] == [a]
    exact = accounting.parse_since("2025-03-05T08:00:00Z")  # inclusive, to the microsecond
    assert [r["id"] for r in accounting.report(ledger, since=exact)["runs"]] == [c, b]
    assert accounting.report(ledger, since=accounting.parse_since("2025-03-07"))["runs"] == []


def test_parse_since_forms():
    ref = dt.datetime(2025, 3, 10, 12, 0, tzinfo=dt.timezone.utc)
    assert accounting.parse_since("2025-03-01") == dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
    assert accounting.parse_since("2025-03-01T08:30") == dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.timezone.utc)
    assert accounting.parse_since("2025-03-01T10:30+02:00") == dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.timezone.utc)
    assert accounting.parse_since("7d", today=ref) == ref - dt.timedelta(days=7)
    assert accounting.parse_since("12h", today=ref) == ref - dt.timedelta(hours=12)
    assert accounting.parse_since("2w", today=ref) == ref - dt.timedelta(weeks=2)
    for bad in ("yesterday", "2025-13-01", "2025-02-30", "", "-3d"):
        with pytest.raises(InputError, match="not a date"):
            accounting.parse_since(bad)
