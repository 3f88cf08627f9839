"""batch-infer `engine: http` end to end on the session's local cluster, through `rayctl launch`:

- against a fake OpenAI-compatible server (a real http.server on 127.0.0.1 in this test) that
  answers 429 and 500 before succeeding: retried, tokens counted from each response's `usage`,
  the API key sent as a Bearer header but never in rayctl's output, log, ledger or the job's
  runtime_env; then a server that keeps answering 500: exit 1, the ledger row failed with
  the reason;
- against a rayctl `serve` run of the demo model (`endpoint: run:RUN_ID`): tokens counted,
  both runs in the ledger.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import assert_no_traceback
from tests.fake_openai import FakeOpenAI

pytestmark = [pytest.mark.slow]

KEY = "sk-e2eSecretKey-7f6e5d4c3b2a"


def _prompts(tmp_path: Path, n: int = 4) -> Path:
    p = tmp_path / "prompts.jsonl"
    p.write_text("".join(json.dumps({"id": i, "prompt": f"prompt number {i}"}) + "\n" for i in range(n)))
    return p


def _recipe(tmp_path: Path, name: str, body: str) -> Path:
    _prompts(tmp_path)
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\nkind: batch-infer\nworkload:\n  input: prompts.jsonl\n  output: out-{name}\n"
                 f"  engine: http\n  batch_size: 2\n  max_new_tokens: 4\n  retry_wait_s: 0.05\n{body}")
    return p


def ledger_rows(home: Path) -> list[dict]:
    from rayctl.ledger import Ledger

    with Ledger(home / "ledger.db") as led:
        return led.runs()


def _jobs(address: str) -> list:
    from rayctl.runs.cluster_api import auth_headers

    req = urllib.request.Request(address + "/api/jobs/", headers=auth_headers(address))
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=20) as r:
        return json.loads(r.read())


@pytest.mark.timeout(900)
def test_http_engine_retries_counts_usage_and_keeps_the_key_secret(cli, tmp_path, local_cluster, rayctl_home):
    srv = FakeOpenAI()
    try:
        srv.script = [429, 500, 503]  # the first answers fail; rayctl retries them
        recipe = _recipe(tmp_path, "api-ok", f"  endpoint: {srv.base}\n  model: fake-model\n"
                                             "  api_key_env: RAYCTL_E2E_KEY\n  max_retries: 3\n")
        res = cli("launch", recipe, env={"RAYCTL_E2E_KEY": KEY})
        assert res.code == 0, res
        assert_no_traceback(res)
        [row] = ledger_rows(rayctl_home)
        assert row["status"] == "succeeded"
        assert row["rows"] == 4 and row["output_tokens"] == 12
        assert row["input_tokens"] == sum(len(f"prompt number {i}") for i in range(4))
        m = row["metrics"]
        assert m["engine"] == "http" and m["api_model"] == "fake-model" and m["endpoint"] == srv.base
        assert "api" not in m and row["cost_usd"] == 0  # a local host: no API price
        assert set(srv.auth) == {f"Bearer {KEY}"} and set(srv.models) == {"fake-model"}
        assert len(srv.auth) == 4 + 3
        log = Path(row["log_path"]).read_text()
        assert "HTTP 429" in log and "retry 1/3" in log
        out_rows = [json.loads(x) for f in sorted((tmp_path / "out-api-ok").glob("*.jsonl"))
                    for x in f.read_text().splitlines()]
        assert sorted(r["generated_text"] for r in out_rows) == sorted(f"prompt number {i}"[::-1] for i in range(4))
        # the key: sent to the endpoint, and nowhere else
        assert KEY not in res.out + res.err and KEY not in log
        assert KEY.encode() not in (rayctl_home / "ledger.db").read_bytes()
        assert KEY not in json.dumps(_jobs(local_cluster.address))
        assert KEY not in cli("logs", row["id"]).out

        srv.script = [500] * 50  # keeps failing: a clear failure after max_retries
        recipe = _recipe(tmp_path, "api-500", f"  endpoint: {srv.base}\n  model: fake-model\n  max_retries: 2\n")
        res = cli("launch", recipe)
        assert res.code == 1, res
        row = [r for r in ledger_rows(rayctl_home) if r["recipe"] == "api-500"][0]
        assert row["status"] == "failed"
        assert f"{srv.base}/chat/completions answered HTTP 500 after 2 retries: scripted failure 500" in row["reason"]
        assert "answered HTTP 500 after 2 retries" in res.err
        assert not (tmp_path / "out-api-500").exists() or not list((tmp_path / "out-api-500").glob("*.jsonl"))
    finally:
        srv.close()


@pytest.mark.timeout(900)
def test_http_engine_against_a_rayctl_serve_run(cli, tmp_path, local_cluster, rayctl_home):
    serve = tmp_path / "serve.yaml"
    serve.write_text("name: http-serve\nkind: serve\nworkload:\n  model: rayctl-demo\n  replicas: 1\n"
                     "  num_cpus: 0.25\n  max_tokens: 8\n")
    res = cli("launch", serve)
    assert res.code == 0, res
    [srow] = ledger_rows(rayctl_home)
    assert srow["status"] == "serving", srow
    try:
        recipe = _recipe(tmp_path, "via-serve", f"  endpoint: run:{srow['id']}\n")
        res = cli("launch", recipe)
        assert res.code == 0, res
        assert_no_traceback(res)
        row = [r for r in ledger_rows(rayctl_home) if r["recipe"] == "via-serve"][0]
        assert row["status"] == "succeeded" and row["rows"] == 4
        assert row["input_tokens"] > 0 and 4 <= row["output_tokens"] <= 16  # max_new_tokens 4, from usage
        m = row["metrics"]
        assert m["engine"] == "http" and m["endpoint_run"] == srow["id"] and m["api_model"] == "rayctl-demo"
        assert m["endpoint"] == srow["metrics"]["url"].rstrip("/") + "/v1"
        assert "api" not in m and row["cost_usd"] == 0
        served = json.loads(urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            srow["metrics"]["metrics_url"], timeout=20).read())
        assert served["requests"] >= 4 and served["output_tokens"] >= row["output_tokens"]
    finally:
        assert cli("stop", srow["id"]).code == 0
