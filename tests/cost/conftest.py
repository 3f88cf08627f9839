"""Fixtures for the cost tests: a ledger in the test's RAYCTL_HOME, filled with runs
whose segments have known start/end times, so every dollar is computable by hand."""

from __future__ import annotations

import pytest

from rayctl.ledger import Ledger


@pytest.fixture
def ledger(rayctl_home):
    led = Ledger(rayctl_home / "ledger.db")
    yield led
    led.close()


@pytest.fixture
def gpu_recipe(tmp_path):
    """A batch-infer recipe for the local target that names the GPUs it would want in the cloud."""
    p = tmp_path / "recipes" / "tiny-infer.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(
        "name: tiny-infer\n"
        "kind: batch-infer\n"
        "target: local\n"
        "resources:\n"
        "  accelerators: A100-80GB:1\n"
        "workload:\n"
        "  model: tiny-gpt2\n"
        "  rows: 200\n"
    )
    return p
