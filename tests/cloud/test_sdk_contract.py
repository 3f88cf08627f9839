"""The SkyPilot SDK calls rayctl makes match SkyPilot 0.14.1's real signatures and types.

The launch tests use a fake at the SDK boundary; this test pins that boundary to the real
SDK: every call `SkyClient` makes binds to the real function's signature, the managed-job
fields it asks for exist, and the recovery strategies it names are registered. It imports
SkyPilot (in a subprocess with a temporary HOME) and calls nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

CODE = textwrap.dedent("""\
    import inspect, sys
    import sky
    from sky.schemas.api import responses
    from sky.utils import registry
    from rayctl.providers import skypilot_sdk

    calls = {
        "jobs.launch": (sky.jobs.launch, ("TASK",), {"name": "n"}),
        "jobs.queue_v2": (sky.jobs.queue_v2, (), {"refresh": False, "job_ids": [1],
                                                  "fields": skypilot_sdk.MANAGED_FIELDS}),
        "jobs.queue_v2/name": (sky.jobs.queue_v2, (), {"refresh": False, "name_match": "n",
                                                       "fields": ["job_id"]}),
        "jobs.cancel": (sky.jobs.cancel, (), {"job_ids": [1]}),
        "jobs.cancel/name": (sky.jobs.cancel, (), {"name": "n"}),
        "jobs.tail_logs": (sky.jobs.tail_logs, (), {"job_id": 1, "follow": True, "output_stream": None}),
        "launch": (sky.launch, ("TASK",), {"cluster_name": "n", "idle_minutes_to_autostop": 5, "down": True,
                                           "retry_until_up": False}),
        "stream_and_get": (sky.stream_and_get, ("REQ",), {"output_stream": None}),
        "get": (sky.get, ("REQ",), {}),
        "api_cancel": (sky.api_cancel, ("REQ",), {}),
        "job_status": (sky.job_status, ("n", [1]), {}),
        "status": (sky.status, (["n"],), {}),
        "tail_logs": (sky.tail_logs, ("n", 1, True), {"output_stream": None}),
        "down": (sky.down, ("n",), {}),
        "endpoints": (sky.endpoints, ("n", 8000), {}),
        "Task.from_yaml_config": (sky.Task.from_yaml_config, ({},), {}),
    }
    bad = []
    for name, (fn, args, kw) in calls.items():
        target = inspect.unwrap(fn)
        try:
            inspect.signature(target).bind(*args, **kw)
        except TypeError as e:
            bad.append(f"{name}: {e}")
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
    p = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=100)
    assert "BAD []" in p.stdout, p.stdout[-3000:] + p.stderr[-3000:]
