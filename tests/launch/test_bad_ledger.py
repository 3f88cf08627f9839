"""Issue 9 item 11: a ledger rayctl cannot use (garbage bytes, another program's SQLite
file, a newer schema, read-only) is exit 2 with the path, what is wrong and what to do,
and the file is left byte-for-byte as it was: never re-created or migrated over."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import assert_no_traceback


def _digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _garbage(p):
    p.write_bytes(os.urandom(8192))


def _truncated_header(p):
    p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 84 + b"garbage" * 300)


def _foreign(p):
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO photos (name) VALUES ('holiday.jpg')")
    con.commit()
    con.close()


def _wrong_schema(p):
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, what TEXT)")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()


def _newer(p):
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE runs (id TEXT PRIMARY KEY)")
    con.execute("PRAGMA user_version=99")
    con.commit()
    con.close()


CASES = {
    "garbage": (_garbage, "is not a readable SQLite database"),
    "bad-header": (_truncated_header, "is not a readable SQLite database"),
    "foreign": (_foreign, "is not a rayctl ledger"),
    "wrong-schema": (_wrong_schema, "lacks column(s)"),
    "newer": (_newer, "newer rayctl"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("cmd", [("runs",), ("cost", "report"), ("status", "some-run"), ("launch", "RECIPE")])
def test_unusable_ledger_is_a_clear_error_and_stays_untouched(cli, rayctl_home, make_recipe, case, cmd):
    make, needle = CASES[case]
    rayctl_home.mkdir(parents=True, exist_ok=True)
    db = rayctl_home / "ledger.db"
    make(db)
    before = _digest(db)
    files_before = sorted(os.listdir(rayctl_home))
    args = [make_recipe() if a == "RECIPE" else a for a in cmd]
    r = cli(*args, timeout=120)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "internal error" not in r.err, r.err
    assert f"ledger {db}" in r.err and needle in r.err, r.err
    assert "leaves it as it is" in r.err or "Upgrade rayctl" in r.err, r.err
    assert _digest(db) == before
    # no -wal/-shm next to it, no re-created file, no run started
    assert sorted(os.listdir(rayctl_home)) == files_before, os.listdir(rayctl_home)


def test_damaged_ledger_does_not_stop_a_plan_but_is_named(cli, rayctl_home, tmp_path, shared_catalog):
    rayctl_home.mkdir(parents=True, exist_ok=True)
    db = rayctl_home / "ledger.db"
    _garbage(db)
    before = _digest(db)
    p = tmp_path / "r.yaml"
    p.write_text("name: r\nkind: batch-infer\nresources: {accelerators: A100:8, spot: true}\n"
                 "workload: {input: prompts.jsonl, output: out/}\n")
    r = cli("plan", p, "--catalog", shared_catalog)
    assert r.code == 0, r
    assert f"ledger {db} is not a readable SQLite database" in r.err and "sticker price" in r.err, r.err
    r = cli("plan", p, "--catalog", shared_catalog, "--preemption-aware")
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"ledger {db}" in r.err, r.err
    assert _digest(db) == before


def _run_without_dac_override(args, home, tmp_path):
    """Run rayctl so that file permissions bind even for root (drop CAP_DAC_OVERRIDE)."""
    env = dict(os.environ, RAYCTL_HOME=str(home), HOME=str(tmp_path), COLUMNS="200")
    env.pop("RAYCTL_DEBUG", None)
    cmd = [sys.executable, "-m", "rayctl", *map(str, args)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.skip("running as root without setpriv: cannot make a file read-only for rayctl")
        cmd = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_read_only_ledger_is_a_clear_error(rayctl_home, tmp_path, what):
    from rayctl.ledger import Ledger

    with Ledger(rayctl_home / "ledger.db") as led:
        led.start_run(recipe="r", kind="train", target="local", status="succeeded")
    db = rayctl_home / "ledger.db"
    for extra in ("ledger.db-wal", "ledger.db-shm"):
        (rayctl_home / extra).unlink(missing_ok=True)
    before = _digest(db)
    db.chmod(0o444)
    if what == "folder":
        db.chmod(0o644)
        rayctl_home.chmod(0o555)
    try:
        r = _run_without_dac_override(["runs"], rayctl_home, tmp_path)
        if r.returncode == 1 and "Operation not permitted" in r.stderr:
            pytest.skip("cannot drop capabilities here")
    finally:
        rayctl_home.chmod(0o755)
        db.chmod(0o644)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert f"ledger {db}: cannot write to it" in r.stderr and "writable" in r.stderr, r.stderr
    assert _digest(db) == before
