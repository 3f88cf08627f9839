"""Fixtures for the cloud target's tests (helpers in cloudkit.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cloudkit import AWS_CSV, GCP_CSV, Clock


@pytest.fixture
def mini_catalog(tmp_path) -> Path:
    d = tmp_path / "catalog"
    (d / "aws").mkdir(parents=True)
    (d / "gcp").mkdir()
    (d / "aws" / "vms.csv").write_text(AWS_CSV)
    (d / "gcp" / "vms.csv").write_text(GCP_CSV)
    (d / "AS_OF").write_text("2026-11-25\n")
    return d


@pytest.fixture
def write_recipe(tmp_path):
    def _write(text: str, name: str = "recipe.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p
    return _write


@pytest.fixture
def ledger(rayctl_home):
    from rayctl.ledger import Ledger

    led = Ledger()
    yield led
    led.close()


@pytest.fixture
def workloads():
    import rayctl.workloads

    return rayctl.workloads


@pytest.fixture
def clock():
    return Clock()
