"""train end to end: TorchTrainer with 2 workers, checkpoints in storage, resume on relaunch."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(500)
def test_checkpoints_and_resumes_from_the_latest(launch, repo, tmp_path):
    storage = tmp_path / "ckpt"
    first = launch(repo / "recipes" / "train.yaml", "tr-1", {"epochs": 2, "storage": str(storage)})
    assert first.status == "SUCCEEDED", first.logs[-4000:]
    m = first.metrics
    assert m["epochs"] == 2 and m["epochs_run"] == 2 and m["resumed_from"] is None
    ckpt = Path(m["checkpoint"])
    assert ckpt.parent == storage / "demo-train" and (ckpt / "state.pt").is_file()
    import json

    claim = json.loads((storage / "demo-train" / ".rayctl-manifest.json").read_text())
    assert (claim["recipe"], claim["kind"], claim["managed_by"]) == ("demo-train", "train", "ray")
    assert [e["done"] for e in first.progress if e["unit"] == "epochs"] == [1, 2]

    second = launch(repo / "recipes" / "train.yaml", "tr-2", {"epochs": 4, "storage": str(storage)})
    assert second.status == "SUCCEEDED", second.logs[-4000:]
    m2 = second.metrics
    assert m2["resumed_from"] == 2 and m2["epochs"] == 4 and m2["epochs_run"] == 2
    assert "resuming from the checkpoint of epoch 2" in second.logs
    assert [e["done"] for e in second.progress if e["unit"] == "epochs"] == [3, 4]
    assert Path(m2["checkpoint"]) != ckpt and (Path(m2["checkpoint"]) / "state.pt").is_file()
    assert m2["val_loss"] < 1.386  # better than chance on 4 classes (ln 4)

    import torch

    state = torch.load(Path(m2["checkpoint"]) / "state.pt", weights_only=True)
    assert state["epoch"] == 4
    # (A relaunch with nothing left to train: test_s3_storage_resumes_too, from s3:// storage.)


@pytest.mark.timeout(400)
def test_s3_storage_resumes_too(launch, tmp_path, s3_endpoint):
    import boto3

    env = "".join(f"    {k}: '{v}'\n" for k, v in s3_endpoint.items())
    recipe = tmp_path / "train.yaml"
    recipe.write_text("name: s3-train\nkind: train\nworkload:\n  workers: 1\n  cpus_per_worker: 1\n  epochs: 1\n"
                      f"  samples: 512\n  storage: s3://rayctl-test/ckpt\n  env:\n{env}")
    first = launch(recipe, "s3-1")
    assert first.status == "SUCCEEDED", first.logs[-4000:]
    assert first.metrics["checkpoint"].startswith("s3://rayctl-test/ckpt/s3-train/checkpoint_")
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="rayctl-test", Prefix="ckpt/")["Contents"]]
    assert any(k.endswith("/state.pt") for k in keys), keys
    # Relaunched with nothing left to train: it restores the checkpoint from S3, says so, trains
    # nothing, and reports the restored state (training more epochs after a restore:
    # test_checkpoints_and_resumes_from_the_latest).
    second = launch(recipe, "s3-2")
    assert second.status == "SUCCEEDED", second.logs[-4000:]
    m = second.metrics
    assert (m["resumed_from"], m["epochs"], m["epochs_run"]) == (1, 1, 0), m
    assert "resuming from the checkpoint of epoch 1 (" in second.logs and "already trained 1 of 1 epochs" in second.logs
    assert m["checkpoint"].startswith("s3://rayctl-test/ckpt/s3-train/checkpoint_") and m["val_loss"] is not None


@pytest.mark.timeout(120)
def test_more_workers_than_the_cluster_holds_fail_fast(launch, repo, tmp_path):
    job = launch(repo / "recipes" / "train.yaml", "tr-big",
                 {"workers": 3, "cpus_per_worker": 1, "storage": str(tmp_path / "c")})
    assert job.status == "FAILED"
    assert "training with 3 worker(s) needs 3 CPU and 0 GPU but the whole cluster has 2 CPU" in job.logs
    assert job.seconds < 60


@pytest.mark.timeout(120)
def test_experiment_folder_with_foreign_files_is_refused_by_the_job(launch, repo, tmp_path):
    storage = tmp_path / "c"
    (storage / "demo-train").mkdir(parents=True)
    (storage / "demo-train" / "results.csv").write_text("the user's")
    job = launch(repo / "recipes" / "train.yaml", "tr-foreign", {"workers": 1, "storage": str(storage)})
    assert job.status == "FAILED"
    assert f"holds {storage / 'demo-train' / 'results.csv'}, which rayctl did not write" in job.logs
    assert sorted(p.name for p in (storage / "demo-train").iterdir()) == ["results.csv"]
    assert job.seconds < 60
