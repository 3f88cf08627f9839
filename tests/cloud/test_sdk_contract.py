"""The SkyPilot SDK calls rayctl makes match SkyPilot 0.14.1's real signatures and types.

The launch tests use a fake at the SDK boundary (fake_sky.py) that binds every call it
receives to the signatures recorded in sky_signatures.json. This module pins that record to
the real SDK (imported in a subprocess with a temporary HOME; nothing is called): the
signatures are the installed SkyPilot's, the managed-job fields rayctl asks for exist, the
recovery strategies it names are registered; and every SDK function rayctl's `SkyClient`
calls is one the fake binds (each client method is driven once against the fake).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pathlib import Path

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).resolve().parent

CODE = textwrap.dedent("""\
    import inspect, sys
    import sky
    from sky.schemas.api import responses
    from sky.utils import registry
    sys.path.insert(0, sys.argv[1])
    from rayctl.providers.skypilot import sdk as skypilot_sdk

    import json, sky_signatures
    bad = []
    recorded = json.loads(sky_signatures.FILE.read_text())["signatures"]
    real = sky_signatures.from_sky()
    bad += [f"signature of {n} changed: recorded {recorded.get(n)} real {real[n]}" for n in real
            if recorded.get(n) != real[n]]
    fields = set(responses.ManagedJobRecord.model_fields)
    bad += [f"field {f}" for f in skypilot_sdk.MANAGED_FIELDS if f not in fields]
    st = set(responses.StatusResponse.model_fields)
    bad += [f"status field {f}" for f in ("name", "status") if f not in st]
    import sky.jobs.recovery_strategy  # registers the strategies
    for s in ("EAGER_NEXT_REGION", "FAILOVER"):
        try:
            registry.JOBS_RECOVERY_STRATEGY_REGISTRY.from_str(s)
        except Exception as e:
            bad.append(f"strategy {s}: {e}")
    for st_name in skypilot_sdk.MANAGED_TERMINAL:
        sky.jobs.ManagedJobStatus(st_name)
    for st_name in skypilot_sdk.CLUSTER_JOB_TERMINAL:
        sky.JobStatus(st_name)
    for exc in ("ResourcesUnavailableError", "ClusterDoesNotExist", "ClusterNotUpError"):
        getattr(sky.exceptions, exc)
    print("BAD", bad)
    """)


def test_skyclient_calls_match_skypilot_sdk(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), SKYPILOT_DISABLE_USAGE_COLLECTION="1")
    p = subprocess.run([sys.executable, "-c", CODE, str(HERE)], capture_output=True, text=True, env=env, timeout=100)
    assert "BAD []" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]


def test_every_call_skyclient_makes_binds_to_the_recorded_sdk(tmp_path):
    """Drive each SkyClient method against the fake: each SDK call it makes is bound to the
    real signature on receipt (a TypeError here is a call SkyPilot would reject)."""
    import io

    import fake_sky
    from rayctl.providers.skypilot.sdk import SkyClient

    fake = fake_sky.FakeSky(run_polls=1)
    fake_sky.RECEIVED.clear()
    c = SkyClient(sky=fake)
    task = c.task({"name": "t", "resources": {"ordered": [{"infra": "aws/us-east-1/us-east-1a",
                                                           "instance_type": "p4d.24xlarge", "use_spot": True}]}})
    job_id = c.launch_managed(task, "rayctl-t", output_stream=io.StringIO())
    c.managed_record(job_id)
    c.managed_by_name("rayctl-t")
    c.managed_logs(job_id, False, io.StringIO())
    c.cancel_managed(job_id=job_id)
    c.cancel_managed(name="rayctl-t")
    c.cancel_request("req-1")
    _, handle = c.launch_cluster(task, "rayctl-c", idle_minutes=5, down=True, output_stream=io.StringIO())
    c.cluster_job_status("rayctl-c", 1)
    c.cluster_status("rayctl-c")
    c.cluster_logs("rayctl-c", 1, False, io.StringIO())
    c.endpoint("rayctl-c", 8000)
    c.down("rayctl-c")
    called = {name for name, _ in fake_sky.RECEIVED}
    assert called == set(fake_sky.SIGNATURES), f"not exercised: {set(fake_sky.SIGNATURES) - called}"
