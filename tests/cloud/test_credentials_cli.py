"""Credentials, redaction and the cloud CLI, run as a user would (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from cloudkit import HERE, RAYCTL
from tests.conftest import assert_no_traceback
from rayctl.redact import MASK, redact, redact_obj

pytestmark = pytest.mark.timeout(120)

FAKE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _run(args, env_extra=None, home=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_"))}
    env.update({"HOME": str(home), "RAYCTL_HOME": str(home / ".rayctl"), "COLUMNS": "200"})
    env.update(env_extra or {})
    t = time.monotonic()
    p = subprocess.run([*RAYCTL, *map(str, args)], capture_output=True, text=True, env=env,
                       timeout=timeout)
    p.elapsed = time.monotonic() - t
    return p


def test_redact_masks_cloud_credentials(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-1234567890-abcdef")
    text = (f"aws_access_key_id={FAKE_KEY_ID} aws_secret_access_key = {FAKE_SECRET}\n"
            '{"private_key_id": "0123456789abcdef", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEv\\n'
            '-----END PRIVATE KEY-----\\n"}\n'
            "Authorization: Bearer ya29.a0AfH6SMBxyz-123 and token ya29.c.Kp8Bxyz\n"
            "failed with tok-1234567890-abcdef; session ASIAQWERTYUIOPASDFGH")
    out = redact(text)
    for secret in (FAKE_KEY_ID, FAKE_SECRET, "0123456789abcdef", "MIIEv", "ya29.", "tok-1234567890-abcdef",
                   "ASIAQWERTYUIOPASDFGH"):
        assert secret not in out, secret
    assert MASK in out and "aws_secret_access_key" in out  # which field it was stays readable
    assert redact("us-east-1 p4d.24xlarge $4.2604/h") == "us-east-1 p4d.24xlarge $4.2604/h"
    assert redact_obj({"a": [f"x {FAKE_KEY_ID}"], "n": 3}) == {"a": [f"x {MASK}"], "n": 3}
    from rayctl.redact import is_secret_name

    assert [n for n in ("HF_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "hf_token",
                        "TOKENIZERS_PARALLELISM", "RAY_AUTH_MODE", "PYTHONUNBUFFERED", "KEYBOARD")
            if is_secret_name(n)] == ["HF_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "hf_token"]


def test_cloud_check_without_credentials_is_fast_and_explains(tmp_path):
    p = _run(["cloud", "check"], home=tmp_path)
    assert p.returncode == 2, p.stderr
    assert_no_traceback(p)
    assert p.elapsed < 15
    assert "enabled clouds: none" in p.stdout
    assert "aws configure" in p.stdout and "gcloud auth application-default login" in p.stdout
    assert "no cloud has usable credentials" in p.stderr
    assert not (tmp_path / ".sky").exists()  # SkyPilot (and its API server) never started


def test_cloud_check_with_aws_keys_never_prints_them(tmp_path):
    p = _run(["cloud", "check", "--json"], home=tmp_path,
             env_extra={"AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET})
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["enabled"] == ["aws"]
    assert FAKE_KEY_ID not in p.stdout + p.stderr and FAKE_SECRET not in p.stdout + p.stderr


def test_pricing_refresh_without_credentials_exits_2(tmp_path):
    p = _run(["pricing", "refresh", "--cloud", "aws"], home=tmp_path)
    assert p.returncode == 2 and "no usable credentials for aws" in p.stderr and "Nothing changed" in p.stderr
    assert_no_traceback(p)
    p = _run(["pricing", "refresh", "--cloud", "azure"], home=tmp_path)
    assert p.returncode == 2 and "--cloud azure" in p.stderr
    p = _run(["pricing", "status"], home=tmp_path)
    assert p.returncode == 0 and "rayctl pricing refresh" in p.stdout


def test_cloud_clusters_and_down_with_nothing_to_do(tmp_path):
    p = _run(["cloud", "clusters"], home=tmp_path)
    assert p.returncode == 0 and "no cloud clusters" in p.stdout
    p = _run(["cloud", "down"], home=tmp_path)
    assert p.returncode == 2 and "--all" in p.stderr
    p = _run(["cloud", "down", "--all"], home=tmp_path)
    assert p.returncode == 0 and "no cloud clusters to tear down" in p.stdout
    assert not (tmp_path / ".sky").exists()


def test_launch_cloud_without_credentials_fails_in_seconds_without_skypilot(tmp_path, shared_catalog):
    """The path `rayctl launch --target cloud` takes: exit-2 error, no sky import, no API server."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent("""\
        name: nocreds
        kind: train
        resources:
          accelerators: A100:8
          spot: true
          clouds: [aws, gcp]
        workload:
          entrypoint: python train.py
        """))
    code = textwrap.dedent(f"""\
        import sys, time
        sys.path.insert(0, {str(HERE)!r})
        from rayctl import recipe
        from rayctl.planning import catalog, planner
        from rayctl.ledger import Ledger
        from rayctl.errors import RayctlError
        from rayctl.providers.skypilot import provider as skypilot
        r = recipe.load({str(recipe)!r})
        p = planner.plan(r, catalog.load({str(shared_catalog)!r}))
        led = Ledger()
        rid = led.start_run(recipe=r.name, kind=r.kind, target="cloud")
        t = time.monotonic()
        try:
            skypilot.launch_cloud(r, p, led, rid)
        except RayctlError as e:
            print("EXIT", e.exit_code, round(time.monotonic() - t, 2))
            print("MSG", e.message)
        print("SKY_IMPORTED", "sky" in sys.modules)
        print("STATUS", led.get(rid)["status"])
        """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_"))}
    env.update(HOME=str(tmp_path), RAYCTL_HOME=str(tmp_path / ".rayctl"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    out = p.stdout
    assert "EXIT 2" in out, p.stdout + p.stderr
    secs = float(out.split("EXIT 2 ")[1].split()[0])
    assert secs < 10
    assert "no usable credentials" in out and "aws configure" in out and "Nothing was started" in out
    assert "SKY_IMPORTED False" in out and "STATUS pending" in out
    assert not (tmp_path / ".sky").exists()


def test_plan_and_help_do_not_import_heavy_libraries(tmp_path, shared_catalog):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: light\nkind: train\nresources:\n  accelerators: A100:8\n  spot: true\n")
    code = textwrap.dedent(f"""\
        import sys
        from rayctl.cli.main import main
        for argv in (["--help"], ["plan", {str(recipe)!r}, "--catalog", {str(shared_catalog)!r}],
                     ["cloud", "--help"], ["pricing", "--help"]):
            try:
                main(argv)
            except SystemExit:
                pass
        heavy = [m for m in ("sky", "boto3", "botocore", "google.cloud", "ray", "torch", "pandas")
                 if m in sys.modules]
        print("HEAVY", heavy)
        """)
    env = dict(os.environ, HOME=str(tmp_path), RAYCTL_HOME=str(tmp_path / ".rayctl"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "HEAVY []" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]


def test_cloud_check_of_an_unknown_cloud_says_so(tmp_path):
    p = _run(["cloud", "check", "--cloud", "foo"], home=tmp_path)
    assert p.returncode == 2, p.stderr
    assert_no_traceback(p)
    assert "--cloud foo: not a cloud rayctl checks" in p.stderr
