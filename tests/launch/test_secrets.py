"""Secrets and auth on real clusters (issue 9, items 3 and 4).

- the rayctl-owned head runs with Ray's token auth: its dashboard refuses requests without the
  token (0600, under the cluster's folder in $RAYCTL_HOME);
- workload.env secrets reach the job as env vars through a 0600 file the job reads and
  deletes, never through the runtime env: not in GET /api/jobs/, not in Ray's
  runtime_env_agent.log, not in the ledger or rayctl's log;
- an existing cluster given as http://user:pw@host:port: the credentials are in no ledger row
  and no `rayctl runs` output, the host is parsed right, and the one warning about secrets
  in the runtime env is printed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from launch_helpers import ledger_rows

from tests.conftest import assert_no_traceback

pytestmark = [pytest.mark.slow]

JOB = r'''
import hashlib, os
v = os.environ.get("HF_TOKEN", "")
print("secret-sha256", hashlib.sha256(v.encode()).hexdigest(), flush=True)
print("plain", os.environ.get("GREETING"), flush=True)
d = os.environ.get("SECRETS_DIR_TO_CHECK")
if d:
    print("secrets-dir", sorted(os.listdir(d)) if os.path.isdir(d) else "absent", flush=True)
'''


def _recipe(tmp_path: Path, name: str, secret: str, extra: str = "", check_dir: str = "") -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "job.py").write_text(JOB)
    env = f"    HF_TOKEN: {json.dumps(secret)}\n    GREETING: hello\n"
    if check_dir:
        env += f"    SECRETS_DIR_TO_CHECK: {json.dumps(check_dir)}\n"
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\nkind: batch-infer\n{extra}workload:\n  entrypoint: python job.py\n"
                 f"  working_dir: code\n  env:\n{env}")
    return p


def _open(url: str, headers: dict | None = None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=20) as r:
        return json.loads(r.read())


def _agent_logs(cluster) -> str:
    files = glob.glob(os.path.join(cluster.temp_dir, "session_*", "logs", "runtime_env_agent*"))
    assert files, f"no runtime_env_agent log under {cluster.temp_dir}"
    return "".join(Path(f).read_text(errors="replace") for f in files)


def test_local_head_has_token_auth(local_cluster):
    from rayctl.runs.cluster_api import auth_headers

    token = Path(local_cluster.auth_token_path)
    assert token.is_file() and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.parent == Path(os.environ["RAYCTL_LOCAL_CLUSTER_DIR"])
    for path in ("/api/jobs/", "/api/version"):
        with pytest.raises(urllib.error.HTTPError) as e:
            _open(local_cluster.address + path)
        assert e.value.code in (401, 403)
        with pytest.raises(urllib.error.HTTPError) as e:
            _open(local_cluster.address + path, {"Authorization": "Bearer not-the-token"})
        assert e.value.code in (401, 403)
    assert isinstance(_open(local_cluster.address + "/api/jobs/", auth_headers(local_cluster.address)), list)
    state = json.loads((token.parent / "state.json").read_text())
    assert token.read_text().strip() not in json.dumps(state)  # the state names the file, not the token


def test_secrets_file_is_private(rayctl_home):
    from rayctl.runs import secrets

    p = secrets._write_secrets_file("run-x", {"HF_TOKEN": "v"})
    assert stat.S_IMODE(p.stat().st_mode) == 0o600 and stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    assert p.parent == rayctl_home / "secrets"
    secrets.remove_secrets_file("run-x")
    assert not p.exists()


@pytest.mark.timeout(300)
def test_secret_reaches_the_job_but_not_its_runtime_env(cli, tmp_path, local_cluster, rayctl_home):
    from rayctl.runs.cluster_api import auth_headers

    secret = "hf_LocalSecretValue_9f8e7d6c5b4a"
    sdir = str(rayctl_home / "secrets")
    res = cli("launch", _recipe(tmp_path, "sec-local", secret, check_dir=sdir))
    assert res.code == 0, res
    assert_no_traceback(res)
    assert f"secret-sha256 {hashlib.sha256(secret.encode()).hexdigest()}" in res.out  # the job saw it
    assert "plain hello" in res.out
    assert "secrets-dir []" in res.out  # read and deleted before the user's code ran
    assert os.listdir(sdir) == []
    assert secret not in res.out + res.err

    [row] = ledger_rows(rayctl_home)
    assert row["status"] == "succeeded"
    jobs = _open(local_cluster.address + "/api/jobs/", auth_headers(local_cluster.address))
    [job] = [j for j in jobs if j.get("submission_id") == row["id"]]
    assert job["runtime_env"]["env_vars"]["GREETING"] == "hello"
    assert "HF_TOKEN" not in job["runtime_env"]["env_vars"]
    assert secret not in json.dumps(jobs)
    assert secret not in _agent_logs(local_cluster)
    assert secret not in Path(row["log_path"]).read_text()
    assert secret.encode() not in (rayctl_home / "ledger.db").read_bytes()


@pytest.mark.timeout(300)
def test_target_url_with_credentials(cli, tmp_path, local_cluster, rayctl_home):
    port = local_cluster.address.rsplit(":", 1)[1]
    password = "pw-Xq7Secretpass"
    target = f"http://someuser:{password}@127.0.0.2:{port}"
    res = cli("launch", _recipe(tmp_path, "sec-remote", "hf_RemoteSecretValue_1a2b3c4d5e"), "--target", target)
    assert res.code == 0, res
    assert_no_traceback(res)
    assert password not in res.out + res.err
    warning = "travel in the job's runtime_env"
    assert (res.out + res.err).count(warning) == 1, res.err
    assert "HF_TOKEN" in res.err and "token auth" in res.err
    [row] = ledger_rows(rayctl_home)
    assert row["status"] == "succeeded"
    assert row["target"] == row["cluster"] == row["ray_address"] == f"http://127.0.0.2:{port}"
    assert password not in json.dumps(row)
    assert password.encode() not in (rayctl_home / "ledger.db").read_bytes()
    for args in (("runs",), ("runs", "--json"), ("status", row["id"]), ("status", row["id"], "--json")):
        out = cli(*args)
        assert out.code == 0, out
        assert password not in out.out + out.err and "someuser" not in out.out + out.err
    assert "127.0.0.2" in cli("runs", "--json").out


def test_bad_target_urls_do_not_echo_credentials(cli, tmp_path):
    recipe = _recipe(tmp_path, "sec-bad", "hf_x")
    res = cli("launch", recipe, "--target", "http://u:pw-Secret99@host:notaport")
    assert res.code == 2, res
    assert "pw-Secret99" not in res.err and "Traceback" not in res.err
    res = cli("launch", recipe, "--target", "http://u:pw-Secret99@127.0.0.9:1")  # nothing listens there
    assert res.code == 2, res
    assert "pw-Secret99" not in res.out + res.err and "127.0.0.9" in res.err


LEAKY_JOB = r'''
import os, sys, time
v = os.environ["HF_TOKEN"]
print("my token is", v, flush=True)
time.sleep(float(os.environ.get("LEAK_SLEEP", "0")))
raise RuntimeError("could not log in with token " + v)
'''


def _leaky_recipe(tmp_path: Path, name: str, secret: str, sleep: float = 0) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "leak.py").write_text(LEAKY_JOB)
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\nkind: batch-infer\nworkload:\n  entrypoint: python leak.py\n"
                 f"  working_dir: code\n  env:\n    HF_TOKEN: {json.dumps(secret)}\n    LEAK_SLEEP: '{sleep}'\n")
    return p


def _assert_nowhere(secret: str, rayctl_home: Path, cli, run_id: str, *texts: str) -> dict:
    for t in texts:
        assert secret not in t
    [row] = [r for r in ledger_rows(rayctl_home) if r["id"] == run_id]
    assert secret not in json.dumps(row)
    assert secret.encode() not in (rayctl_home / "ledger.db").read_bytes()
    log = Path(row["log_path"]).read_text()
    assert secret not in log and "***REDACTED***" in log
    out = cli("logs", run_id)
    assert out.code == 0, out
    assert secret not in out.out + out.err and "***REDACTED***" in out.out
    return row


@pytest.mark.timeout(300)
def test_secret_printed_by_the_job_is_masked_everywhere(cli, tmp_path, local_cluster, rayctl_home):
    secret = "hf_PrintedSecret_0a1b2c3d4e5f"
    res = cli("launch", _leaky_recipe(tmp_path, "sec-leak", secret))
    assert res.code == 1, res  # (the job's own traceback is echoed: no assert_no_traceback)
    assert "my token is ***REDACTED***" in res.out
    [row] = ledger_rows(rayctl_home)
    row = _assert_nowhere(secret, rayctl_home, cli, row["id"], res.out, res.err)
    assert row["status"] == "failed" and "could not log in" in row["reason"]


@pytest.mark.timeout(300)
def test_secret_printed_by_a_detached_job_is_masked_in_logs_and_reconcile(cli, tmp_path, local_cluster,
                                                                           rayctl_home):
    import time

    secret = "hf_DetachedSecret_9z8y7x6w5v"
    res = cli("launch", _leaky_recipe(tmp_path, "sec-leak-d", secret, sleep=4), "--detach")
    assert res.code == 0, res
    [row] = ledger_rows(rayctl_home)
    deadline = time.monotonic() + 120
    seen_live = False
    while time.monotonic() < deadline:
        out = cli("logs", row["id"])  # from the cluster while it runs
        assert secret not in out.out + out.err
        seen_live = seen_live or "***REDACTED***" in out.out
        st = cli("status", row["id"], "--json")  # reconcile completes the saved log once the job ends
        assert secret not in st.out + st.err
        if json.loads(st.out)["status"] in ("failed", "succeeded"):
            break
        time.sleep(1)
    row = _assert_nowhere(secret, rayctl_home, cli, row["id"])
    assert row["status"] == "failed" and "could not log in" in row["reason"]


def test_secret_values_mask_only_secrets_of_real_length():
    from rayctl.redact import MASK, redact, secret_values

    env = {"HF_TOKEN": "hf_abcdefgh", "DB_PASSWORD": "abc", "GREETING": "hello-world-long",
           "DB_URL": "postgres://u:pw-123456@h/db"}
    vals = secret_values(env)
    assert set(vals) == {"hf_abcdefgh", "postgres://u:pw-123456@h/db"}  # not the plain one, not the 3-char one
    assert redact("t=hf_abcdefgh p=abc g=hello-world-long", extra=vals) == f"t={MASK} p=abc g=hello-world-long"
    assert redact("x 123456 y", extra=("123456",)) == f"x {MASK} y"  # 6 characters are masked
    assert redact("x 12345 y", extra=("12345",)) == "x 12345 y"  # shorter ones are not


def test_recipe_secret_values_reread_from_the_file(tmp_path):
    from rayctl.recipe import secret_values

    p = _leaky_recipe(tmp_path, "sec-file", "hf_FromTheRecipe_123")
    assert secret_values(str(p)) == ("hf_FromTheRecipe_123",)
    assert secret_values(str(tmp_path / "gone.yaml")) == () and secret_values(None) == ()
