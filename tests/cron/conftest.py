"""Fixtures for schedule tests: recipe files and a crontab file full of other people's lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import FOREIGN, RECIPE


@pytest.fixture
def make_recipe(tmp_path):
    def _make(name="nightly", schedule: str | None = '"0 2 * * *"', folder: Path | None = None,
              filename: str | None = None, text: str | None = None) -> Path:
        d = folder or (tmp_path / "recipes")
        d.mkdir(parents=True, exist_ok=True)
        p = d / (filename or f"{name}.yaml")
        if text is None:
            text = RECIPE.format(name=name, schedule=f"schedule: {schedule}\n" if schedule else "")
        p.write_text(text)
        return p

    return _make


@pytest.fixture
def crontab_file(tmp_path) -> Path:
    p = tmp_path / "crontab"
    p.write_bytes(FOREIGN)
    return p
