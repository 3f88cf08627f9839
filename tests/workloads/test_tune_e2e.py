"""tune end to end: the recipe's param_space, ASHA, and the best trial reported."""

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(400)
def test_finds_and_reports_the_best_trial(launch, repo, tmp_path):
    storage = tmp_path / "tune"
    job = launch(repo / "recipes" / "tune.yaml", "tu1",
                 {"num_samples": 2, "max_epochs": 3, "grace_period": 1, "storage": str(storage)})
    assert job.status == "SUCCEEDED", job.logs[-4000:]
    m = job.metrics
    assert m["trials"] == 4 and m["trials_failed"] == 0  # 2 samples x grid of 2 batch sizes
    assert m["nodes_used"] == 1  # the session's one-node cluster
    assert set(m["best_config"]) == {"lr", "hidden", "dropout", "batch_size"}
    assert 0.0003 <= m["best_config"]["lr"] <= 0.03 and m["best_config"]["hidden"] in (32, 64, 128)
    # The reported best is the lowest final val_loss over the trials Tune recorded in storage.
    last = {}
    for result in (storage / m["experiment"]).glob("*/result.json"):
        lines = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
        last[result.parent.name] = (lines[-1]["val_loss"], lines[-1]["config"])
    assert len(last) == 4
    best_loss, best_cfg = min(last.values(), key=lambda v: v[0])
    assert m["best_metric"] == pytest.approx(best_loss)
    assert {k: best_cfg[k] for k in m["best_config"]} == m["best_config"]
    trials = [e for e in job.progress if e["unit"] == "trials"]
    assert trials[-1]["done"] == trials[-1]["total"] == 4
    assert "rayctl: best trial: val_loss=" in job.logs
