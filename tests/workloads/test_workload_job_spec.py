"""job_spec of each built-in: entrypoint, runtime_env, resolved payload, resource needs."""

import json
import os
import sys
from pathlib import Path

import pytest

from rayctl import recipe as R
from rayctl.workloads import batch_infer, common, serve, train, tune


def load(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return R.load(p)


def payload(spec):
    return json.loads(spec.runtime_env["env_vars"][common.ENV])


def test_batch_infer_spec_resolves_paths_against_the_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYCTL_HOME", str(tmp_path / "home"))
    rec = load(tmp_path, "name: b\nkind: batch-infer\nworkload:\n  input: data/p.jsonl\n  output: out\n"
                         "  concurrency: [1, 3]\n  env: {HF_TOKEN: abc}\n  pip: [vllm]\n")
    spec = batch_infer.job_spec(rec, "run1")
    assert spec.entrypoint == f"{sys.executable} -m rayctl.workloads.batch_infer"
    assert spec.runtime_env["py_modules"] == [str(Path(common.__file__).resolve().parents[1])]
    assert spec.runtime_env["pip"] == ["vllm"]
    env = spec.runtime_env["env_vars"]
    assert env["HF_TOKEN"] == "abc" and env["RAY_DEDUP_LOGS"] == "0"
    assert env["RAYCTL_HOME"] == str(tmp_path / "home")
    p = payload(spec)
    assert p["version"] == common.PAYLOAD_VERSION and p["run_id"] == "run1" and p["kind"] == "batch-infer"
    wl = p["workload"]
    assert wl["input"] == str(tmp_path / "data" / "p.jsonl")
    assert wl["output"] == str(tmp_path / "out")
    assert wl["input_format"] == "jsonl" and wl["batch_size"] == 32 and wl["model"] == "rayctl-demo"
    assert spec.needs_cpus == pytest.approx(1 * 0.5 + batch_infer.TASK_CPUS)
    assert spec.entrypoint_num_cpus == 0 and not spec.detached
    assert spec.metadata["rayctl_run_id"] == "run1"


def test_uris_are_kept_and_remote_targets_use_python(tmp_path):
    rec = load(tmp_path, "name: b\nkind: batch-infer\ntarget: http://head:8265\nworkload:\n"
                         "  input: s3://bucket/in/\n  input_format: parquet\n  output: s3://bucket/out\n")
    spec = batch_infer.job_spec(rec, "r")
    assert spec.entrypoint == "python -m rayctl.workloads.batch_infer"
    assert "RAYCTL_HOME" not in spec.runtime_env["env_vars"]
    wl = payload(spec)["workload"]
    assert (wl["input"], wl["output"]) == ("s3://bucket/in/", "s3://bucket/out")


def test_train_spec_defaults_storage_to_rayctl_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYCTL_HOME", str(tmp_path / "home"))
    rec = load(tmp_path, "name: tr\nkind: train\nworkload:\n  workers: 3\n  cpus_per_worker: 0.5\n")
    spec = train.job_spec(rec, "r")
    wl = payload(spec)["workload"]
    assert wl["storage"] == str(tmp_path / "home" / "checkpoints") and wl["experiment"] == "tr"
    assert spec.needs_cpus == 1.5 and spec.needs_gpus == 0
    rec = load(tmp_path, "name: tr\nkind: train\nworkload:\n  workers: 2\n  use_gpu: true\n"
                         "  storage: s3://b/ckpt\n")
    spec = train.job_spec(rec, "r")
    assert spec.needs_gpus == 2 and payload(spec)["workload"]["storage"] == "s3://b/ckpt"


def test_tune_spec_counts_trials(tmp_path):
    rec = load(tmp_path, "name: tu\nkind: tune\nworkload:\n  param_space:\n    lr: {loguniform: [0.001, 0.1]}\n"
                         "    batch_size: {grid: [32, 64, 128]}\n  num_samples: 2\n  metric: accuracy\n")
    spec = tune.job_spec(rec, "abc")
    wl = payload(spec)["workload"]
    assert wl["trials"] == 6 and wl["mode"] == "max" and wl["experiment"] == "tu-abc"
    assert spec.metadata["trials"] == 6


def test_serve_spec_is_detached_and_passes_the_serve_address(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYCTL_SERVE_HOST", "127.0.0.2")
    monkeypatch.setenv("RAYCTL_SERVE_PORT", "18123")
    rec = load(tmp_path, "name: sv\nkind: serve\nworkload:\n  autoscaling: {min_replicas: 2, max_replicas: 4}\n")
    spec = serve.job_spec(rec, "r")
    assert spec.detached
    assert spec.runtime_env["env_vars"]["RAYCTL_SERVE_PORT"] == "18123"
    assert spec.metadata["serve_app"] == "sv"
    assert spec.needs_cpus == 2 * 0.25
    stop = serve.stop_spec(rec, "r2")
    assert stop.entrypoint.endswith("-m rayctl.workloads.serve --delete sv")


def test_workload_payload_is_required_inside_the_job(monkeypatch):
    monkeypatch.delenv(common.ENV, raising=False)
    with pytest.raises(common.WorkloadError, match="RAYCTL_WORKLOAD is not set"):
        common.load_payload()
    monkeypatch.setenv(common.ENV, "{not json")
    with pytest.raises(common.WorkloadError, match="not valid JSON"):
        common.load_payload()
