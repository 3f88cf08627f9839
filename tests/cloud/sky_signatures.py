"""SkyPilot 0.14.1's SDK signatures for the calls rayctl makes, recorded from the real SDK.

`fake_sky.FakeSky` binds every call it receives to these (a wrong name, a missing
argument or an unknown keyword fails the test that made it); `test_sdk_contract.py`
checks this table still equals the installed SkyPilot's signatures, and regenerates it:
`python tests/cloud/sky_signatures.py > tests/cloud/sky_signatures.json`.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

FILE = Path(__file__).with_suffix(".json")
NAMES = ("jobs.launch", "jobs.queue_v2", "jobs.cancel", "jobs.tail_logs", "launch", "stream_and_get", "get",
         "api_cancel", "job_status", "status", "tail_logs", "down", "endpoints", "Task.from_yaml_config")


def from_sky() -> dict:
    """{name: [[parameter, kind, has_default], ...]} read off the installed SkyPilot."""
    import sky

    out = {}
    for name in NAMES:
        fn = sky
        for part in name.split("."):
            fn = getattr(fn, part)
        sig = inspect.signature(inspect.unwrap(fn))
        out[name] = [[p.name, p.kind.name, p.default is not inspect.Parameter.empty] for p in sig.parameters.values()]
    return out


_NO_DEFAULT = inspect.Parameter.empty


def load() -> dict[str, inspect.Signature]:
    doc = json.loads(FILE.read_text())
    return {name: inspect.Signature([inspect.Parameter(p, getattr(inspect.Parameter, kind),
                                                       default=None if has_default else _NO_DEFAULT)
                                     for p, kind, has_default in params])
            for name, params in doc["signatures"].items()}


if __name__ == "__main__":
    import sky

    print(json.dumps({"skypilot": sky.__version__, "signatures": from_sky()}, indent=1))
