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
