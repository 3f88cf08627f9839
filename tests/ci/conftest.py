"""Fixtures for the CI flow: a folder of recipes (some over budget) and a private catalog copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

_BATCH = "workload:\n  input: prompts.jsonl\n  output: out/\n"
RECIPES = {
    "a-llm.yaml": "name: llm-a\nkind: batch-infer\nresources:\n  accelerators: L4:1\nbudget:\n  max_hours: 8\n" + _BATCH,
    "b-train.yaml": ("name: train-b\nkind: train\nresources:\n  accelerators: H100:8\n  spot: true\n"
                     "budget:\n  max_usd: 5\n  max_hours: 10\n"),
    "c-tune.yaml": ("name: tune-c\nkind: tune\nresources:\n  accelerators: A100:1\n  clouds: [gcp, aws]\n"
                    "workload:\n  param_space:\n    lr: {loguniform: [0.0001, 0.1]}\n"),
    "d-nightly.yaml": ("name: nightly-d\nkind: batch-infer\nschedule: \"0 2 * * *\"\nresources:\n"
                       "  accelerators: T4:1\n  clouds: [aws]\n  regions: [us-east-1]\nbudget:\n  max_hours: 4\n" + _BATCH),
    "e-serve.yaml": ("name: serve-e\nkind: serve\nresources:\n  accelerators: A10G:1\n"
                     "budget:\n  max_usd: 0.5\n  max_hours: 10\n"),
}
OVER_BUDGET = ("b-train.yaml", "e-serve.yaml")


@pytest.fixture
def recipes(tmp_path) -> Path:
    d = tmp_path / "repo" / "recipes"
    d.mkdir(parents=True)
    for name, text in RECIPES.items():
        (d / name).write_text(text)
    return d


@pytest.fixture
def catalog(shared_catalog, tmp_path) -> Path:
    """A private copy of the test catalog that a test may edit (never the one in tests/data)."""
    dest = tmp_path / "catalog"
    shutil.copytree(shared_catalog, dest)
    (dest / "AS_OF").write_text("2025-01-15\n")  # pinned date, as examples/ci/fetch-catalog.sh writes
    return dest
