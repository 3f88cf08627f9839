"""Helpers shared by the cloud target's tests (fixtures live in conftest.py).

The synthetic catalog below is made up for these tests (SkyPilot's vms.csv layout,
invented prices); tests that need real offers use the `shared_catalog` fixture (tests/data/catalog).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RAYCTL = [sys.executable, "-m", "rayctl"]  # the CLI, as a user runs it
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
