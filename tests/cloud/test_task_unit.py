"""The job spec -> SkyPilot task translation (pure; no SkyPilot import)."""

from __future__ import annotations

import json
import shlex
import sys

from rayctl import settings
from rayctl.providers.skypilot import candidates, remote
from rayctl.providers.skypilot import task as t


def test_remote_spec_moves_local_things_to_where_they_land(tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text("{}\n")
    req = tmp_path / "requirements.txt"
    req.write_text("# pinned\nnumpy==2.0\n\nrequests\n")
    mod = tmp_path / "mylib"
    mod.mkdir()
    payload = {"version": 1, "workload": {"input": str(data), "output": str(tmp_path / "out"),
                                          "nested": {"files": [str(data)]}, "model": "gpt2", "n": 3}}
    spec = {"entrypoint": f"{shlex.quote(sys.executable)} -m rayctl.workloads.batch_infer --x 1",
            "runtime_env": {"working_dir": str(tmp_path), "py_modules": [settings.package_dir(), str(mod)],
                            "pip": str(req),
                            "env_vars": {"RAYCTL_WORKLOAD": json.dumps(payload), "RAYCTL_HOME": "/home/me/.rayctl",
                                         "WANDB_API_KEY": "k-123456789", "MODE": "x"}}}
    notes: list = []
    head, mounts, workdir, secrets = remote.remote_spec(spec, "run-1", notes)
    assert head["entrypoint"] == "python -m rayctl.workloads.batch_infer --x 1"
    env = head["runtime_env"]
    assert workdir == str(tmp_path) and env["working_dir"] == "~/sky_workdir"
    assert env["py_modules"] == ["~/.rayctl/pkg/rayctl", "~/.rayctl/py_modules/1/mylib"]
    assert mounts["~/.rayctl/pkg/rayctl"] == settings.package_dir()
    assert mounts["~/.rayctl/py_modules/1/mylib"] == str(mod)
    assert env["pip"] == ["numpy==2.0", "requests"]
    assert "RAYCTL_HOME" not in env["env_vars"] and "WANDB_API_KEY" not in env["env_vars"]
    assert secrets == {"WANDB_API_KEY": "k-123456789"} and head["secret_env"] == ["WANDB_API_KEY"]
    wl = json.loads(env["env_vars"]["RAYCTL_WORKLOAD"])["workload"]
    assert wl["input"].startswith("~/.rayctl/data/") and mounts[wl["input"]] == str(data)
    assert wl["nested"]["files"][0].startswith("~/.rayctl/data/")
    assert wl["output"] == "/tmp/rayctl-outputs/output" and wl["model"] == "gpt2" and wl["n"] == 3
    assert any("workload.output is a local path" in n for n in notes)


def test_cluster_names_and_candidates(tmp_path):
    assert t.cluster_name("Demo_Train-20261125-104948-d56c") == "rayctl-demo-train-20261125-104948-d56c"
    assert len(t.cluster_name("x" * 200)) <= 60

    class C:
        def __init__(self, cloud, region, zone, spot=True, itype="p4d.24xlarge"):
            self.cloud, self.region, self.zone, self.spot, self.instance_type = cloud, region, zone, spot, itype
            self.accelerator, self.accelerator_count = "A100", 8

    cands = [C("aws", "us-east-1", "use1-az1"), C("aws", "us-east-1", "use1-az2"), C("simplepod", "r", None),
             C("gcp", "us-central1", "us-central1-a")]
    ordered, used = candidates.ordered_resources(cands, zone_names={"use1-az1": "us-east-1a"})
    # a zone this account lacks is tried at region level; clouds SkyPilot cannot provision are skipped
    assert [e["infra"] for e in ordered] == ["aws/us-east-1/us-east-1a", "aws/us-east-1",
                                            "gcp/us-central1/us-central1-a"]
    ordered, used = candidates.ordered_resources(cands, aws_region_only=True)
    assert [e["infra"] for e in ordered] == ["aws/us-east-1", "gcp/us-central1/us-central1-a"]
    assert used == [cands[0], cands[3]]
