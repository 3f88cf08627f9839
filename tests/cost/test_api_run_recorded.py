"""An API run as `rayctl launch` records it (runs/api_runs.record_cost on the job's real metrics
line: engine http, endpoint, api_model, tokens) compared side by side with a self-hosted run by
`rayctl cost compare --run SELF --run API`: the two helpers' halves of the metrics contract meet."""

from __future__ import annotations

import json

import pytest

from costhelpers import assert_no_traceback, ts
from test_cost_side_by_side import cloud_run


def recorded_api_run(led) -> str:
    from rayctl.runs import api_runs

    rid = led.start_run(recipe="tiny-infer-api", kind="batch-infer", target="local", started_at=ts("11:00"),
                        nodes=1, hourly_usd=0.0)
    led.open_segment(rid, cloud="local", instance_type="local-2cpu", hourly_usd_per_node=0.0, started_at=ts("11:00"))
    metrics = {"rows": 1000, "input_tokens": 1_000_000, "output_tokens": 500_000, "engine": "http",
               "model": "gpt-4o-mini", "endpoint": "https://api.openai.com/v1", "api_model": "gpt-4o-mini",
               "elapsed_s": 250.0}
    led.finish(rid, "succeeded", ended_at=ts("11:05"), rows=1000, input_tokens=1_000_000, output_tokens=500_000,
               metrics=metrics)
    warnings: list = []
    api_runs.record_cost(led, rid, warnings.append)
    assert not warnings
    return rid


def test_recorded_api_run_side_by_side_with_a_self_hosted_run(cli, shared_catalog, ledger, gpu_recipe):
    self_id, api_id = cloud_run(ledger, gpu_recipe), recorded_api_run(ledger)
    row = ledger.get(api_id)
    api = row["metrics"]["api"]
    assert api["provider"] == "openai" and row["cost_usd"] == pytest.approx(row["metrics"]["api_cost_usd"])
    res = cli("cost", "compare", "--run", self_id, "--run", api_id, "--catalog", shared_catalog, "--json")
    assert res.code == 0, res
    assert_no_traceback(res)
    me, them = json.loads(res.out)["runs"]
    assert (me["id"], them["id"]) == (self_id, api_id)
    assert them["engine"] == "http" and them["api"] == api
    assert them["usd_per_1m_tokens"] == pytest.approx(row["cost_usd"] / 1.5)
    assert them["tokens_per_usd"] == pytest.approx(1_500_000 / row["cost_usd"])
    assert me["tokens_per_usd"] == pytest.approx(5_000_000 / (1.19 * 0.5))
