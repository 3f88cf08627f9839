"""Helpers shared by the cloud target's tests (fixtures live in conftest.py).

The synthetic catalog below is made up for these tests (SkyPilot's vms.csv layout,
invented prices); tests that need real offers use the `shared_catalog` fixture (tests/data/catalog).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUN_RAYCTL = HERE / "run_rayctl.py"
SKY_INPROCESS = HERE / "sky_inprocess.py"

AWS_CSV = """\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone
p4d.24xlarge,A100,8.0,96.0,1152.0,,32.77,5.00,us-east-1,use1-az1
p4d.24xlarge,A100,8.0,96.0,1152.0,,32.77,5.50,us-east-1,use1-az2
p4d.24xlarge,A100,8.0,96.0,1152.0,,32.77,6.00,us-west-2,usw2-az1
p4d.24xlarge,A100,8.0,96.0,1152.0,,32.77,7.00,us-west-2,usw2-az2
g5.xlarge,A10G,1.0,4.0,16.0,,1.006,0.40,us-east-1,use1-az1
g5.xlarge,A10G,1.0,4.0,16.0,,1.006,0.45,us-west-2,usw2-az1
"""

GCP_CSV = """\
InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice
a2-highgpu-8g,96.0,680.0,,,,us-central1,us-central1-a,3.00,1.00
a2-highgpu-8g,96.0,680.0,,,,europe-west4,europe-west4-a,3.30,1.10
,,,A100,8.0,,us-central1,us-central1-a,23.47,5.50
,,,A100,8.0,,europe-west4,europe-west4-a,23.47,5.80
g2-standard-4,4.0,16.0,,,,us-central1,us-central1-a,0.20,0.08
,,,L4,1.0,,us-central1,us-central1-a,0.50,0.20
"""

ZONE_NAMES = {"use1-az1": "us-east-1a", "use1-az2": "us-east-1b", "usw2-az1": "us-west-2a",
              "usw2-az2": "us-west-2b"}


SPEC = {"entrypoint": "python -m rayctl.workloads.train", "runtime_env": {"env_vars": {"RAYCTL_WORKLOAD": "{}"}},
        "entrypoint_num_cpus": 1, "entrypoint_num_gpus": 0, "detached": False, "metadata": {}}


def stub_workloads() -> None:
    """Install a minimal `rayctl.workloads` when this checkout lacks it (it comes from
    another branch: contract 1). With the real module present, nothing changes."""
    try:
        import rayctl.workloads  # noqa: F401
        return
    except ModuleNotFoundError:
        pass
    import dataclasses

    @dataclasses.dataclass
    class JobSpec:
        entrypoint: str
        runtime_env: dict = dataclasses.field(default_factory=dict)
        entrypoint_num_cpus: float = 0.0
        entrypoint_num_gpus: float = 0.0
        needs_cpus: float = 0.0
        needs_gpus: float = 0.0
        detached: bool = False
        metadata: dict = dataclasses.field(default_factory=dict)

    def job_spec(recipe, run_id):
        import rayctl

        w = recipe.workload or {}
        env = {str(k): str(v) for k, v in (w.get("env") or {}).items()}
        env["RAYCTL_RUN_ID"] = run_id
        rt = {"env_vars": env}
        if "entrypoint" in w:
            if w.get("working_dir"):
                rt["working_dir"] = str((Path(recipe.path).parent / w["working_dir"]).resolve())
            if w.get("pip"):
                rt["pip"] = list(w["pip"])
            return JobSpec(entrypoint=w["entrypoint"], runtime_env=rt)
        mod = {"batch-infer": "batch_infer"}.get(recipe.kind, recipe.kind)
        rt["py_modules"] = [str(Path(rayctl.__file__).parent)]
        env["RAYCTL_WORKLOAD"] = "{}"
        return JobSpec(entrypoint=f"python -m rayctl.workloads.{mod}", runtime_env=rt,
                       detached=recipe.kind == "serve")

    m = types.ModuleType("rayctl.workloads")
    m.JobSpec = JobSpec
    m.job_spec = job_spec
    m.__rayctl_test_stub__ = True
    sys.modules["rayctl.workloads"] = m
    import rayctl

    rayctl.workloads = m


class Clock:
    """A clock for budget tests: starts now, advances only when the code sleeps."""

    def __init__(self):
        import time

        self.t = time.time()
        self.slept = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
        self.slept += s


def assert_no_traceback(p) -> None:
    """No Python traceback in a finished subprocess's output (CompletedProcess or CLIResult)."""
    out = getattr(p, "stdout", None) or getattr(p, "out", "") or ""
    err = getattr(p, "stderr", None) or getattr(p, "err", "") or ""
    assert "Traceback" not in err, err
    assert "Traceback" not in out, out
