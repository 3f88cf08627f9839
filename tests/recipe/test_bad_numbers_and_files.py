"""Issue 9 items 9-10: NaN/infinity in a recipe and recipe paths that are not regular
files. Both are refused where the file is read (exit 2, file:line:column and field),
before any validator or planner sees them. Through the real CLI; no Ray needed."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import assert_no_traceback

BASE = """\
name: nightly-embed
kind: batch-infer
resources:
  accelerators: H100:8
  spot: true
{resources}budget:
  max_hours: 4
{budget}workload: {{input: prompts.jsonl, output: out/}}
"""


def recipe(tmp_path, resources="", budget="", name="recipe.yaml"):
    p = tmp_path / name
    p.write_text(BASE.format(resources=resources, budget=budget))
    return p


@pytest.mark.parametrize("resources,budget,needle", [
    ("", "  max_usd: .inf\n", ":8:12: field 'budget.max_usd': '.inf' is infinite"),
    ("", "  max_usd: -.Inf\n", ":8:12: field 'budget.max_usd': '-.Inf' is infinite"),
    ("", "  max_usd: 1.0e+400\n", ":8:12: field 'budget.max_usd': '1.0e+400' is infinite"),
    ("  max_hourly_usd: .nan\n", "", ":6:19: field 'resources.max_hourly_usd': '.nan' is NaN"),
    ("  checkpoint_minutes: .inf\n", "", ":6:23: field 'resources.checkpoint_minutes': '.inf' is infinite"),
    ("  restart_minutes: .NaN\n", "", ":6:20: field 'resources.restart_minutes': '.NaN' is NaN"),
    ("  prefer_within_pct: .nan\n", "", "field 'resources.prefer_within_pct'"),
    ("  cpus: .inf\n", "", "field 'resources.cpus': '.inf' is infinite"),
    ("  nodes: " + "9" * 400 + "\n", "", "field 'resources.nodes'"),
])
@pytest.mark.parametrize("cmd", ["validate", "plan"])
def test_non_finite_numbers_are_refused_with_place_and_field(cli, tmp_path, resources, budget, needle, cmd):
    p = recipe(tmp_path, resources, budget)
    r = cli(cmd, p)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"{p}{needle}" in r.err if needle.startswith(":") else needle in r.err, r.err
    assert "$nan" not in r.out + r.err and "$inf" not in r.out + r.err


def test_non_finite_in_a_workload_field_is_refused_too(cli, tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: r\nkind: train\nworkload:\n  entrypoint: python x.py\n  entrypoint_num_cpus: .nan\n")
    r = cli("validate", p)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"{p}:5:24: field 'workload.entrypoint_num_cpus': '.nan' is NaN" in r.err, r.err


def test_nan_checkpoint_no_longer_reorders_a_preemption_aware_plan(cli, tmp_path, shared_catalog):
    # The reported case: with --preemption-aware a NaN made the planner pick a far dearer offer.
    p = recipe(tmp_path, "  checkpoint_minutes: .nan\n  restart_minutes: .nan\n")
    r = cli("plan", p, "--preemption-aware", "--catalog", shared_catalog, "--json")
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "field 'resources.checkpoint_minutes'" in r.err, r.err


def test_finite_numbers_still_validate(cli, tmp_path):
    p = recipe(tmp_path, "  max_hourly_usd: 120.5\n  checkpoint_minutes: 15\n", "  max_usd: 1.5e+3\n")
    r = cli("validate", p)
    assert r.code == 0, r


# ---------------------------------------------------------------- non-regular files

@pytest.mark.parametrize("cmd", ["validate", "plan", "launch"])
def test_a_fifo_recipe_is_refused_at_once(cli, tmp_path, cmd):
    fifo = tmp_path / "recipe.yaml"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    r = cli(cmd, fifo, timeout=60)  # before the fix this blocked forever on open()
    took = time.monotonic() - t0
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"{fifo}: is a named pipe (FIFO), not a regular file" in r.err, r.err
    assert took < 30, took
    # launch refused it before recording anything
    led = tmp_path / "rayctl-home" / "ledger.db"
    if cmd == "launch" and led.exists():
        import sqlite3

        con = sqlite3.connect(led)
        try:
            assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        finally:
            con.close()


@pytest.mark.parametrize("path,needle", [("/dev/null", "is a device, not a regular file"),
                                         ("/dev/zero", "is a device, not a regular file")])
def test_a_device_recipe_is_refused(cli, path, needle):
    if not os.path.exists(path):
        pytest.skip(f"{path} absent")
    r = cli("validate", path, timeout=60)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"{path}: {needle}" in r.err, r.err


def test_a_directory_recipe_is_refused(cli, tmp_path):
    r = cli("validate", tmp_path)
    assert r.code == 2, r
    assert f"{tmp_path}: is a directory" in r.err, r.err


def test_a_symlink_to_a_regular_recipe_still_works(cli, tmp_path):
    p = recipe(tmp_path)
    link = tmp_path / "link.yaml"
    link.symlink_to(p)
    r = cli("validate", link)
    assert r.code == 0, r
