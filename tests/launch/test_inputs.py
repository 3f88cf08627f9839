"""Bad input to launch and the run commands: exit 2, one clear message, no traceback. No Ray needed."""

from __future__ import annotations

import time

import pytest

from launch_helpers import ledger_rows

from tests.conftest import assert_no_traceback


def _bad(res, *needles):
    assert res.code == 2, res
    assert_no_traceback(res)
    for n in needles:
        assert n in res.err, res.err


def test_bad_target_flag(cli, make_recipe):
    _bad(cli("launch", make_recipe(), "--target", "moon"), "--target: 'moon' is not a target")


def test_missing_working_dir_names_file_line_and_field(cli, tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: r\nkind: train\nworkload:\n  entrypoint: python x.py\n  working_dir: nope\n")
    res = cli("launch", p)
    _bad(res, f"{p}:5:16: field 'workload.working_dir': 'nope' is not a directory")
    # Input errors are found before anything starts: no run is recorded.
    assert not (tmp_path / "rayctl-home" / "ledger.db").exists() or ledger_rows(tmp_path / "rayctl-home") == []


@pytest.mark.parametrize("body, needles", [
    ("  entrypoint: ''\n", ["field 'workload.entrypoint'", "command to run"]),
    ("  entrypoint: python x.py\n  env: [A, B]\n", ["field 'workload.env'", "mapping"]),
    ("  entrypoint: python x.py\n  env: {A: {b: 1}}\n", ["field 'workload.env.A'"]),
    ("  entrypoint: python x.py\n  workdir: .\n", ["unknown field 'workdir'", "did you mean 'working_dir'"]),
    ("  entrypoint: python x.py\n  pip: 3\n", ["field 'workload.pip'"]),
    ("  entrypoint: python x.py\n  pip: [requests, 4]\n", ["field 'workload.pip[1]'"]),
    ("  entrypoint: python x.py\n  entrypoint_num_cpus: -1\n", ["field 'workload.entrypoint_num_cpus'"]),
    ("  entrypoint: python x.py\n  pip: missing-requirements.txt\n",
     ["field 'workload.pip'", "requirements file 'missing-requirements.txt' not found"]),
])
def test_bad_user_code_fields(cli, tmp_path, body, needles):
    p = tmp_path / "r.yaml"
    p.write_text("name: r\nkind: batch-infer\nworkload:\n" + body)
    _bad(cli("launch", p), str(p), *needles)


def test_validate_checks_user_code_fields_too(cli, tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: r\nkind: tune\nworkload:\n  entrypoint: python x.py\n  env: 5\n")
    _bad(cli("validate", p), f"{p}:5:8: field 'workload.env'")


def test_unknown_runs(cli):
    for cmd in ("status", "stop", "logs"):
        _bad(cli(cmd, "no-such-run"), "no run 'no-such-run' in the ledger")


def test_down_refuses_a_cluster_rayctl_did_not_start(cli):
    _bad(cli("down", "http://10.0.0.1:8265"), "rayctl never stops it")


def test_runs_bad_status(cli):
    _bad(cli("runs", "--status", "happy"), "--status: 'happy' is not a run status")


def test_runs_empty(cli):
    res = cli("runs")
    assert res.code == 0 and "no runs recorded yet" in res.out
    res = cli("runs", "--json")
    assert res.code == 0 and '"runs": []' in res.out


def test_cloud_target_needs_yes_without_a_terminal(cli, make_recipe):
    _bad(cli("launch", make_recipe(), "--target", "cloud"), "pass --yes")


@pytest.mark.parametrize("address", ["http://127.0.0.1:9", "http://no-such-host.invalid:8265"])
def test_unreachable_target_fails_fast_and_is_recorded(cli, make_recipe, rayctl_home, address):
    p = make_recipe(name="far", extra=f"target: {address}\n")
    t = time.monotonic()
    res = cli("launch", p)
    took = time.monotonic() - t
    _bad(res, f"cannot reach a Ray cluster at {address}")
    assert took < 20, took
    rows = ledger_rows(rayctl_home)
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "failed" and row["target"] == address
    assert "cannot reach" in row["reason"] and row["ended_at"]


def test_blackholed_target_times_out_within_seconds(cli, make_recipe, rayctl_home):
    p = make_recipe(name="far")
    t = time.monotonic()
    res = cli("launch", p, "--target", "http://10.255.255.1:8265")
    assert time.monotonic() - t < 20
    # Either nothing answers (timeout) or some middlebox answers, but not like Ray: both are exit 2.
    _bad(res, "Ray cluster at http://10.255.255.1:8265")
    assert ledger_rows(rayctl_home)[0]["status"] == "failed"


def test_help_does_not_import_ray(repo):
    import subprocess
    import sys

    for args in (["--help"], ["launch", "--help"], ["runs", "--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "rayctl", *args], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        mods = {ln.rsplit("|", 1)[-1].strip().split(".")[0] for ln in proc.stderr.splitlines() if "|" in ln}
        assert not mods & {"ray", "sky", "boto3", "torch", "pandas", "psutil"}, args
