"""Secrets in `workload.env` never appear in what `rayctl plan` prints (issue 9, item 2).

`plan --emit skypilot` used to write `secrets: {HF_TOKEN: null}` and, in the same task,
the value inside `RAYCTL_JOB_SPEC` (the built-in runner's payload held workload.env).
"""

from __future__ import annotations

import json

import pytest
import yaml

HF = "hf_verysecretvalue0123456789"
OPENAI = "sk-openai-secret-abcdefghijkl"

RECIPE = f"""\
name: sec-batch
kind: batch-infer
resources:
  accelerators: L4:1
  clouds: [aws, gcp]
workload:
  model: rayctl-demo
  input: /tmp/in.jsonl
  output: s3://bucket/out/
  env:
    HF_TOKEN: {HF}
    OPENAI_API_KEY: {OPENAI}
    MODE: visible-value
"""

USER = f"""\
name: sec-user
kind: train
resources:
  accelerators: A100:8
  clouds: [aws, gcp]
workload:
  entrypoint: python train.py
  env:
    WANDB_API_KEY: {OPENAI}
    MODE: visible-value
"""


@pytest.mark.parametrize("text", [RECIPE, USER], ids=["built-in", "user-code"])
def test_plan_outputs_hold_no_secret_value(cli, tmp_path, shared_catalog, text):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    res = cli("plan", recipe, "--emit", "skypilot", "--catalog", shared_catalog)
    assert res.code == 0, res
    for value in (HF, OPENAI):
        assert value not in res.out and value not in res.err
    task = yaml.safe_load(res.out.split("\n", 3)[-1] if res.out.startswith("#") else res.out)
    assert all(v is None for v in task["secrets"].values()) and task["secrets"]
    head = json.loads(task["envs"]["RAYCTL_JOB_SPEC"])
    assert sorted(head["secret_env"]) == sorted(task["secrets"])
    assert head["runtime_env"]["env_vars"]["MODE"] == "visible-value"  # ordinary env still travels
    assert "secrets are written as null" in res.err

    res = cli("plan", recipe, "--json", "--catalog", shared_catalog)
    assert res.code == 0, res
    json.loads(res.out)
    for value in (HF, OPENAI):
        assert value not in res.out and value not in res.err


MORE = """\
name: sec-more
kind: batch-infer
resources:
  accelerators: L4:1
  clouds: [aws, gcp]
workload:
  model: rayctl-demo
  input: /tmp/in.jsonl
  output: s3://bucket/out/
  env:
    DATABASE_URL: postgres://bob:dbSECRET444@db:5432/x
    DB_PASS: dbpassSECRET555
    PGPASSWORD: pgSECRET666
    GITHUB_PAT: ghpSECRET777
    MODE: visible-value
"""


def test_common_credential_names_and_urls_with_passwords_are_secrets(cli, tmp_path, shared_catalog):
    """PGPASSWORD, DB_PASS, GITHUB_PAT and any value with `user:password@` in a URL used to
    be emitted as ordinary env vars."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(MORE)
    res = cli("plan", recipe, "--emit", "skypilot", "--catalog", shared_catalog)
    assert res.code == 0, res
    for value in ("dbSECRET444", "dbpassSECRET555", "pgSECRET666", "ghpSECRET777"):
        assert value not in res.out and value not in res.err
    task = yaml.safe_load(res.out.split("\n", 3)[-1] if res.out.startswith("#") else res.out)
    assert sorted(task["secrets"]) == ["DATABASE_URL", "DB_PASS", "GITHUB_PAT", "PGPASSWORD"]


def test_secret_names():
    from rayctl.redact import is_secret, is_secret_name

    for name in ("HF_TOKEN", "OPENAI_API_KEY", "PGPASSWORD", "DB_PASS", "MYSQL_PWD", "GITHUB_PAT", "APITOKEN"):
        assert is_secret_name(name), name
    for name in ("TOKENIZERS_PARALLELISM", "PWD", "MODE", "PATH", "KEYBOARD_LAYOUT"):
        assert not is_secret_name(name), name
    assert is_secret("DATABASE_URL", "postgres://u:pw@db/x") and not is_secret("URL", "https://example.com/x")


def test_validation_errors_never_repeat_url_credentials(cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\nkind: train\ntarget: ftp://alice:hunter2pw@h:8265\n"
                      "workload:\n  entrypoint: python x.py\n")
    for args in (("validate", recipe), ("validate", recipe, "--json"), ("plan", recipe)):
        res = cli(*args)
        assert res.code == 2, res
        assert "hunter2pw" not in res.out + res.err and "target" in res.out + res.err


@pytest.mark.parametrize("target, why", [("http://u:pw@h:99999", "out of range"), ("http://u:pw@", "no host"),
                                         ("https://:8265", "no host")])
def test_validation_refuses_targets_launch_cannot_use(cli, tmp_path, target, why):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\nkind: train\ntarget: {target}\nworkload:\n  entrypoint: python x.py\n")
    res = cli("validate", recipe)
    assert res.code == 2, res
    assert why in res.err and "field 'target'" in res.err and "pw" not in res.err
