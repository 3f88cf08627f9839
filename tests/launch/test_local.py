"""End to end on the session's real local Ray cluster: launch user code, the ledger, the
Ray job list, logs, the metrics protocol, and the failure paths (a job that raises,
`rayctl stop`, SIGINT, a busy cluster)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import assert_no_traceback
from launch_helpers import (ledger_rows, popen_cli, processes_with, ray_job_status,
                            wait_for)

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(180)
def test_launch_user_code_end_to_end(cli, make_recipe, local_cluster, rayctl_home):
    recipe = make_recipe(name="hello", args="4 workers")
    res = cli("launch", recipe)
    assert res.code == 0, res
    assert_no_traceback(res)
    assert "succeeded run hello-" in res.out
    assert "4 rows · 28 input tokens · 44 output tokens" in res.out
    assert "output written: /tmp/nowhere.jsonl" in res.out
    assert "hello from the job hi-there" in res.out  # the job's output streams through, with its env
    # Every progress event is a line, also those two worker processes printed in the same second
    # (Ray's log deduplication would fold them into one "[repeated 3x across cluster]" line).
    for d in (1, 2, 3, 4):
        assert f"progress: rows {d}/4 ({25 * d}%)" in res.err, res.err
        assert f"progress: steps {d}/4 ({25 * d}%)" in res.err, res.err
    assert "repeated" not in res.out + res.err and "Running entrypoint" not in res.out  # Ray's lines: the log only
    assert "output tokens/s (44 output tokens in the whole run's" in res.out  # the one throughput figure

    [row] = ledger_rows(rayctl_home)
    rid = row["id"]
    assert row["status"] == "succeeded" and row["reason"] is None
    assert row["kind"] == "batch-infer" and row["target"] == "local" and row["cluster"] == "local"
    assert (row["rows"], row["input_tokens"], row["output_tokens"]) == (4, 28, 44)
    assert row["metrics"] == {"rows": 4, "input_tokens": 28, "output_tokens": 44, "output": "/tmp/nowhere.jsonl",
                              "model": "tiny"}  # merged: the prefixed worker line counts too
    assert row["ray_job_id"] == rid and row["ray_address"] == local_cluster.address
    assert row["hourly_usd"] == 0 and row["cost_usd"] == 0 and row["duration_s"] > 0
    assert row["recipe_sha256"] and row["recipe_path"] == str(recipe)

    # The log file holds the job's whole output, protocol lines included.
    log = open(row["log_path"]).read()
    assert f"hello from the job hi-there {rid}" in log and '"type": "metrics"' in log and "done" in log

    # A real Ray job, under the id the ledger holds.
    from rayctl.providers import local

    env = dict(os.environ, **local.ray_env(local_cluster))  # token auth: the CLI reads the token file
    out = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "job", "list", "--address",
                          local_cluster.address], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"submission_id='{rid}'" in out.stdout
    assert ray_job_status(local_cluster.address, rid) == "SUCCEEDED"

    # runs / status / logs agree.
    res = cli("runs", "--json")
    assert res.code == 0 and json.loads(res.out)["runs"][0]["id"] == rid
    res = cli("status", rid[:-2], "--json")  # a unique prefix is enough
    assert res.code == 0 and json.loads(res.out)["status"] == "succeeded"
    assert len(json.loads(res.out)["segments"]) == 1
    res = cli("logs", rid)
    assert res.code == 0 and "hello from the job" in res.out and "Running entrypoint" in res.out
    assert '"type": "progress"' not in res.out and '"type": "metrics"' not in res.out  # protocol lines: --raw
    assert "::rayctl:: not json" in res.out  # not a protocol event: the job's own output
    res = cli("logs", rid, "--raw")
    assert res.code == 0 and res.out.count('"type": "progress"') == 8 and '"type": "metrics"' in res.out
    res = cli("stop", rid)
    assert res.code == 0 and "already ended: succeeded" in res.out


@pytest.mark.timeout(180)
def test_a_workload_that_raises(cli, make_recipe, local_cluster, rayctl_home):
    res = cli("launch", make_recipe(name="boom", args="2 fail"), "--quiet")
    assert res.code == 1, res
    assert "Traceback" not in res.err  # the job's traceback is its log, not rayctl's
    assert "failed: Job entrypoint command failed with exit code 1: ValueError: boom from the job" in res.err
    assert "hello from the job" not in res.out  # --quiet
    [row] = ledger_rows(rayctl_home)
    assert row["status"] == "failed"
    assert row["reason"] == "Job entrypoint command failed with exit code 1: ValueError: boom from the job"
    assert row["rows"] == 2 and row["ended_at"]  # metrics reported before the failure are kept
    assert "ValueError: boom from the job" in open(row["log_path"]).read()
    assert ray_job_status(local_cluster.address, row["id"]) == "FAILED"


def _wait_running(home, address, timeout=60) -> dict:
    def running():
        rows = ledger_rows(home) if (home / "ledger.db").exists() else []
        if rows and rows[0].get("ray_job_id"):
            try:
                return rows[0] if ray_job_status(address, rows[0]["ray_job_id"]) == "RUNNING" else None
            except OSError:
                return None
        return None

    return wait_for(running, timeout, "the job to be RUNNING")


@pytest.mark.timeout(180)
def test_rayctl_stop_on_a_running_launch(make_recipe, local_cluster, rayctl_home, cli):
    marker = f"stopme-{uuid.uuid4().hex[:8]}"
    recipe = make_recipe(name="stopme", args=f"10000 {marker}")
    proc = popen_cli("launch", recipe, home=rayctl_home)
    try:
        row = _wait_running(rayctl_home, local_cluster.address)
        wait_for(lambda: processes_with(marker), 30, "the job's driver process")
        res = cli("stop", row["id"])
        assert res.code == 0, res
        assert f"stopped run {row['id']} (stopped)" in res.out
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "was stopped before it finished" in err and "Traceback" not in err
    [row] = ledger_rows(rayctl_home)
    assert row["status"] == "stopped" and "stopped" in row["reason"]
    assert ray_job_status(local_cluster.address, row["id"]) == "STOPPED"
    wait_for(lambda: not processes_with(marker), 20, "the job's driver to exit")


@pytest.mark.timeout(180)
def test_detach_then_stop(make_recipe, local_cluster, rayctl_home, cli):
    res = cli("launch", make_recipe(name="bg", args="10000"), "--detach")
    assert res.code == 0, res
    assert "(detached)" in res.out
    [row] = ledger_rows(rayctl_home)
    assert row["status"] == "running"
    _wait_running(rayctl_home, local_cluster.address)
    res = cli("logs", row["id"])
    assert res.code == 0
    res = cli("status", row["id"], "--json")
    assert json.loads(res.out)["status"] == "running"
    res = cli("stop", row["id"])
    assert res.code == 0, res
    row = ledger_rows(rayctl_home)[0]
    assert row["status"] == "stopped" and row["reason"] == "stopped by rayctl stop"
    assert "hello from the job" in open(row["log_path"]).read()  # saved from the cluster


@pytest.mark.timeout(180)
def test_sigint_during_launch_stops_the_job(make_recipe, local_cluster, rayctl_home):
    marker = f"sigint-{uuid.uuid4().hex[:8]}"
    proc = popen_cli("launch", make_recipe(name="ctrlc", args=f"10000 {marker}"), home=rayctl_home)
    try:
        row = _wait_running(rayctl_home, local_cluster.address)
        wait_for(lambda: processes_with(marker), 30, "the job's driver process")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    [row] = ledger_rows(rayctl_home)
    assert row["status"] == "interrupted" and row["ended_at"]
    assert ray_job_status(local_cluster.address, row["id"]) == "STOPPED"
    wait_for(lambda: not processes_with(marker), 20, "no orphan driver")


@pytest.mark.timeout(180)
def test_sigterm_is_handled_like_ctrl_c(make_recipe, local_cluster, rayctl_home):
    proc = popen_cli("launch", make_recipe(name="term", args="10000"), home=rayctl_home)
    try:
        _wait_running(rayctl_home, local_cluster.address)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    row = ledger_rows(rayctl_home)[0]
    assert row["status"] == "interrupted"
    assert ray_job_status(local_cluster.address, row["id"]) == "STOPPED"


@pytest.mark.timeout(180)
def test_existing_cluster_target(cli, make_recipe, local_cluster, rayctl_home):
    """target: http://... submits to a running cluster and starts or stops nothing."""
    from rayctl.providers import local

    daemons = {p.pid for p in processes_with(local_cluster.temp_dir)}  # gcs, raylet, dashboard, ...
    recipe = make_recipe(name="remote", extra=f"target: {local_cluster.address}\n")
    elsewhere = {"RAYCTL_LOCAL_CLUSTER_DIR": str(rayctl_home / "no-cluster-here")}
    # Seen as someone else's cluster, it has token auth: without the token rayctl is refused, clearly.
    res = cli("launch", recipe, env={**elsewhere, "RAY_AUTH_MODE": "disabled"})
    assert res.code == 2 and "answered HTTP 401" in res.err and "RAY_AUTH_TOKEN" in res.err, res
    assert "Traceback" not in res.err
    # With the token in the environment, as for any existing cluster with token auth.
    res = cli("launch", recipe, env={**elsewhere, **local.ray_env(local_cluster)})
    assert res.code == 0, res
    [row] = [r for r in ledger_rows(rayctl_home) if r["status"] != "failed"]
    assert row["target"] == local_cluster.address and row["cluster"] == local_cluster.address
    assert row["status"] == "succeeded" and row["rows"] == 3
    assert not (rayctl_home / "no-cluster-here").exists()
    assert local.healthy(local_cluster)
    assert daemons <= {p.pid for p in processes_with(local_cluster.temp_dir)}


@pytest.mark.timeout(120)
def test_resources_the_cluster_never_has(cli, make_recipe, local_cluster, rayctl_home):
    res = cli("launch", make_recipe(name="huge", workload_extra="  entrypoint_num_cpus: 64\n"))
    assert res.code == 2, res
    assert_no_traceback(res)
    assert "needs 64 CPU(s) but the Ray cluster at" in res.err and "in all" in res.err
    res = cli("launch", make_recipe(name="gpu", workload_extra="  entrypoint_num_gpus: 1\n"))
    assert res.code == 2 and "has no GPUs" in res.err
    assert [r["status"] for r in ledger_rows(rayctl_home)] == ["failed", "failed"]


@pytest.mark.timeout(120)
def test_accelerators_without_a_gpu_warn_and_run_on_cpu(cli, make_recipe, local_cluster, rayctl_home):
    res = cli("launch", make_recipe(name="wantsgpu", extra="resources:\n  accelerators: T4:1\n"))
    assert res.code == 0, res
    assert "asks for T4:1 but this machine has no GPU" in res.err
    assert ledger_rows(rayctl_home)[0]["status"] == "succeeded"


@pytest.mark.timeout(180)
def test_busy_cluster_is_refused_not_hung(cli, make_recipe, local_cluster, rayctl_home):
    total = local_cluster.num_cpus
    hog = make_recipe(name="hog", args="10000", workload_extra=f"  entrypoint_num_cpus: {total}\n")
    res = cli("launch", hog, "--detach")
    assert res.code == 0, res
    hog_row = ledger_rows(rayctl_home)[0]
    try:
        _wait_running(rayctl_home, local_cluster.address)
        t = time.monotonic()
        # Refused before submission when the cluster already reports the CPUs in use, or stopped
        # after RAYCTL_BUSY_TIMEOUT s PENDING when its report lagged: never a hang.
        res = cli("launch", make_recipe(name="late", workload_extra="  entrypoint_num_cpus: 1\n"),
                  env={"RAYCTL_BUSY_TIMEOUT": "10"})
        assert res.code == 1, res
        assert_no_traceback(res)
        assert "held by other work" in res.err and hog_row["id"] in res.err
        assert time.monotonic() - t < 60
    finally:
        assert cli("stop", hog_row["id"]).code == 0
    late = [r for r in ledger_rows(rayctl_home) if r["recipe"] == "late"][0]
    assert late["status"] == "failed" and "held by other work" in late["reason"]


SERVE_APP = r'''
import json, os
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

@serve.deployment(ray_actor_options={"num_cpus": 0})
class Echo:
    def __init__(self):
        self.n = 0

    async def __call__(self, request: Request):
        if request.url.path.endswith("/-/rayctl/metrics"):
            return JSONResponse({"requests": self.n, "input_tokens": 3 * self.n, "output_tokens": 5 * self.n})
        self.n += 1
        return JSONResponse({"echo": self.n})

host, port = os.environ["RAYCTL_SERVE_HOST"], int(os.environ["RAYCTL_SERVE_PORT"])
serve.start(http_options={"host": host, "port": port})
serve.run(Echo.bind(), name="echo-test", route_prefix="/", blocking=False)
print("::rayctl:: " + json.dumps({"type": "metrics", "url": f"http://{host}:{port}"}), flush=True)
'''


@pytest.mark.timeout(240)
def test_user_code_serve_app_detaches_counts_tokens_and_stops(cli, tmp_path, local_cluster, rayctl_home):
    """Contract 3 with user code: the port the cluster allocated, `serving`, the counters, stop."""
    import urllib.error
    import urllib.request

    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "app.py").write_text(SERVE_APP)
    recipe = tmp_path / "echo.yaml"
    recipe.write_text("name: echo\nkind: serve\nworkload:\n  entrypoint: python app.py\n  working_dir: srv\n")
    res = cli("launch", recipe)
    assert res.code == 0, res
    [row] = ledger_rows(rayctl_home)
    url = f"http://{local_cluster.serve_host}:{local_cluster.serve_port}"
    assert row["status"] == "serving" and row["metrics"]["url"] == url and row["ended_at"] is None
    assert f"serving run {row['id']} at {url}" in res.out

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for i in (1, 2):
        assert json.loads(opener.open(url + "/", timeout=30).read()) == {"echo": i}
    res = cli("status", row["id"], "--json")
    doc = json.loads(res.out)
    assert doc["status"] == "serving" and (doc["input_tokens"], doc["output_tokens"]) == (6, 10)
    assert doc["metrics"]["serve_requests"] == 2

    res = cli("stop", row["id"])
    assert res.code == 0, res
    row = ledger_rows(rayctl_home)[0]
    assert row["status"] == "stopped" and row["output_tokens"] == 10 and row["ended_at"]

    def gone():
        try:
            opener.open(url + "/", timeout=3)
            return False
        except (urllib.error.URLError, OSError):
            return True

    wait_for(gone, 30, "the Serve app to stop answering")
