"""The head-node runner (`python -m rayctl.providers.skypilot.head`) against a real Ray head.

This is what SkyPilot's `run` execs on a cloud cluster's head after start_cluster; here
the Ray head is a private one on 127.0.0.2 with its own ports and temp dir, started with
`ray start --block` in its own process group and stopped by killing that group (never
`ray stop`, which would kill other people's Ray).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from rayctl import protocol
from rayctl.providers.skypilot import head as skypilot_head
from tests.conftest import require_infra

SRC = Path(__file__).resolve().parents[2] / "src"


SECRET = "s3cr3t-value"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        require_infra(f"ray CLI not installed at {ray}")
    tmp = tempfile.mkdtemp(prefix="rc-cloud-")
    port, dash = _free_port(), _free_port()
    # As on a SkyPilot node: the task's `secrets:` are env vars of `run`, whose start_cluster
    # starts Ray, so every Ray process inherits them.
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", API_TOKEN=SECRET)
    proc = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.2", f"--port={port}",
         f"--dashboard-port={dash}", "--dashboard-host=127.0.0.2", "--num-cpus=1", "--num-gpus=0",
         f"--temp-dir={tmp}", f"--ray-client-server-port={_free_port()}",
         f"--dashboard-agent-listen-port={_free_port()}", f"--metrics-export-port={_free_port()}",
         f"--min-worker-port={20000 + port % 1000 * 20}", f"--max-worker-port={20000 + port % 1000 * 20 + 19}",
         "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"http://127.0.0.2:{dash}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    require_infra("could not start a private Ray head for this test")
                time.sleep(1)
        time.sleep(2)
        yield address
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=8)  # `ray start --block` can sit on SIGTERM for 30 s+: then SIGKILL the group
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


def _head(address, entrypoint, *, deadline=None, extra_env=None, secret=None, timeout=120):
    spec = {"run_id": "t", "entrypoint": entrypoint, "runtime_env": {"env_vars": {"MODE": "test"}},
            "entrypoint_num_cpus": 0.1, "detached": False, "metadata": {"k": "v"},
            "secret_env": ["API_TOKEN"] if secret else []}
    env = dict(os.environ, RAYCTL_JOB_SPEC=json.dumps(spec), RAYCTL_RUN_ID="t", RAYCTL_RAY_ADDRESS=address,
               RAY_AUTH_MODE="disabled", PYTHONPATH=str(SRC))
    env.pop("RAYCTL_DEADLINE", None)
    env.pop("RAYCTL_BUDGET_SECONDS", None)
    if deadline is not None:
        env["RAYCTL_DEADLINE"] = str(deadline)
    if secret:
        env["API_TOKEN"] = secret
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "rayctl.providers.skypilot.head"], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_head_runner_submits_streams_and_reports(ray_head):
    code = ("import os, json; print('mode', os.environ['MODE'], 'secret-len', len(os.environ['API_TOKEN'])); "
            "print('::rayctl:: ' + json.dumps({'type': 'metrics', 'rows': 7}))")
    p = _head(ray_head, f'python -c "{code}"', secret=SECRET)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "mode test secret-len 12" in p.stdout  # inherited from the cluster, not the runtime env
    assert '::rayctl:: {"type": "metrics", "rows": 7}' in p.stdout
    assert SECRET not in p.stdout and "warning" not in p.stdout
    with urllib.request.urlopen(f"{ray_head}/api/jobs/", timeout=10) as r:
        listing = r.read().decode()
    assert '"MODE": "test"' in listing and SECRET not in listing  # the runtime env never held it

    p = _head(ray_head, "python -c \"import sys; print('boom'); sys.exit(3)\"")
    assert p.returncode == 1 and "boom" in p.stdout and "failed" in p.stdout

    t = time.time()
    p = _head(ray_head, "python -c \"import time; print('working', flush=True); time.sleep(120)\"",
              deadline=t + 8)
    assert p.returncode == skypilot_head.EXIT_BUDGET, p.stdout + p.stderr
    assert any((protocol.parse_line(ln) or {}).get("type") == "budget" for ln in p.stdout.splitlines()), p.stdout
    assert time.time() - t < 60


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_head_runner_waits_for_every_node_before_submitting(ray_head):
    """SKYPILOT_NUM_NODES=2 on a real 1-node Ray head: the runner counts the alive nodes with Ray's state API,
    never submits, and exits EXIT_NODES after RAYCTL_NODES_TIMEOUT_S with a ::rayctl:: error line."""
    deadline = time.monotonic() + 120
    while skypilot_head.alive_nodes(ray_head) < 1:  # a loaded machine's raylet registers seconds after the dashboard
        assert time.monotonic() < deadline, "the head's raylet never registered"
        time.sleep(2)
    assert skypilot_head.alive_nodes(ray_head) == 1
    with urllib.request.urlopen(f"{ray_head}/api/jobs/", timeout=10) as r:
        before = len(json.loads(r.read().decode()))
    t = time.monotonic()
    p = _head(ray_head, "python -c \"print('never runs')\"",
              extra_env={"SKYPILOT_NUM_NODES": "2", "RAYCTL_NODES_TIMEOUT_S": "6"})
    assert p.returncode == skypilot_head.EXIT_NODES, p.stdout + p.stderr
    assert "1 of 2 Ray node(s) alive" in p.stdout and "never runs" not in p.stdout
    m = protocol.merge_metrics(p.stdout.splitlines())
    assert m["nodes_alive"] == 1 and m["nodes_wanted"] == 2 and "only 1 of 2 nodes joined" in m["error"]
    assert 6 <= time.monotonic() - t < 120
    with urllib.request.urlopen(f"{ray_head}/api/jobs/", timeout=10) as r:
        assert len(json.loads(r.read().decode())) == before  # nothing was submitted


def test_resolve_runtime_env_expands_paths_and_keeps_secrets_out():
    spec = {"runtime_env": {"working_dir": "~/sky_workdir", "py_modules": ["~/.rayctl/pkg/rayctl", "s3://b/m.zip"],
                            "env_vars": {"A": "1", "HF_TOKEN": "stray"}}, "secret_env": ["HF_TOKEN", "MISSING_TOKEN"]}
    env = skypilot_head.resolve_runtime_env(spec, {"HF_TOKEN": "hf_x"})
    home = os.path.expanduser("~")
    assert env["working_dir"] == f"{home}/sky_workdir"
    assert env["py_modules"] == [f"{home}/.rayctl/pkg/rayctl", "s3://b/m.zip"]
    assert env["env_vars"] == {"A": "1"}  # secrets reach the job through the cluster's environment
    assert skypilot_head.missing_secrets(spec, {"HF_TOKEN": "hf_x"}) == ["MISSING_TOKEN"]
    assert skypilot_head.deadline({"RAYCTL_DEADLINE": "123"}) == 123.0
    assert skypilot_head.deadline({"RAYCTL_BUDGET_SECONDS": "60"}, now=1000.0) == 1060.0
    assert skypilot_head.deadline({}) is None
