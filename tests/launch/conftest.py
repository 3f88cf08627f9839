"""Fixtures for launch tests: a tiny user-code job and recipes that run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

JOB = r'''
import json, os, sys, time

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 3
mode = sys.argv[2] if len(sys.argv) > 2 else "ok"
delay = float(os.environ.get("JOB_DELAY", "0.1"))
print("hello from the job", os.environ.get("GREETING", "-"), os.environ.get("RAYCTL_RUN_ID", "-"), flush=True)
for i in range(rows):
    print("::rayctl:: " + json.dumps({"type": "progress", "unit": "rows", "done": i + 1, "total": rows}), flush=True)
    if i == 0:
        print("(MapWorker pid=1) ::rayctl:: " + json.dumps({"type": "metrics", "rows": 0, "model": "tiny"}), flush=True)
    time.sleep(delay)
print("::rayctl:: not json", flush=True)
print("::rayctl:: " + json.dumps({"type": "metrics", "rows": rows, "input_tokens": 7 * rows,
                                  "output_tokens": 11 * rows, "output": "/tmp/nowhere.jsonl"}), flush=True)
if mode == "workers":  # protocol lines from two worker processes, which Ray's log dedup would fold
    import ray

    ray.init(logging_level="WARNING")

    @ray.remote(num_cpus=0)
    class W:
        def report(self, first):
            for d in (first, first + 1):
                print("::rayctl:: " + json.dumps({"type": "progress", "unit": "steps", "done": d, "total": 4}),
                      flush=True)
            return os.getpid()

    ws = [W.remote(), W.remote()]
    assert len(set(ray.get([w.report.remote(1 + 2 * i) for i, w in enumerate(ws)]))) == 2
    time.sleep(1.0)  # the workers' lines reach the driver
if mode == "fail":
    raise ValueError("boom from the job")
print("done", flush=True)
'''


@pytest.fixture
def job_dir(tmp_path) -> Path:
    d = tmp_path / "code"
    d.mkdir()
    (d / "job.py").write_text(JOB)
    return d


@pytest.fixture
def make_recipe(tmp_path, job_dir):
    """Write a user-code recipe next to `code/`; returns its path."""

    def make(name: str = "demo", args: str = "3", kind: str = "batch-infer", extra: str = "",
             env: dict | None = None, workload_extra: str = "") -> Path:
        env = {"GREETING": "hi-there", **(env or {})}
        env_yaml = "".join(f"\n    {k}: {json.dumps(str(v))}" for k, v in env.items())
        text = (f"name: {name}\nkind: {kind}\n{extra}"
                f"workload:\n  entrypoint: python job.py {args}\n  working_dir: code\n  env:{env_yaml}\n"
                f"{workload_extra}")
        p = tmp_path / f"{name}.yaml"
        p.write_text(text)
        return p

    return make


