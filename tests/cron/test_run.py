"""`schedule run`: the lock, the rotated log, exit codes and ledger rows.

The lock is tested with a real `flock` held by this test process. Launching for real
needs the local Ray cluster from `rayctl.runs.launch`; the test that does so is skipped
where that module is not part of this checkout.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import assert_no_traceback

from .helpers import command_of, ledger_runs, our_lines

pytestmark = pytest.mark.timeout(120)



@pytest.fixture
def scheduled(cli, make_recipe, tmp_path, rayctl_home):
    """A schedule 'nightly' installed in a crontab file: (recipe path, crontab line)."""
    recipe = make_recipe("nightly")
    ct = tmp_path / "ct"
    r = cli("schedule", "add", recipe, "--crontab-file", ct)
    assert r.code == 0, r
    (line,) = our_lines(ct.read_bytes())
    return recipe, line


def hold_lock(home):
    path = home / "locks" / "schedule-nightly.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} since test\n".encode(), 0)
    return fd


def log_of(home, suffix=""):
    return home / "logs" / f"schedule-nightly.log{suffix}"


def test_second_run_while_one_holds_the_lock_exits_0_and_launches_nothing(cli, scheduled, rayctl_home):
    fd = hold_lock(rayctl_home)
    try:
        r = cli("schedule", "run", "nightly")
    finally:
        os.close(fd)
    assert r.code == 0, r
    assert_no_traceback(r)
    assert "schedule nightly" in r.out and "still running" in r.out and f"pid {os.getpid()}" in r.out
    assert "nothing launched" in r.out
    assert "still running" in log_of(rayctl_home).read_text()
    assert ledger_runs(rayctl_home) == []


def test_the_crontab_line_runs_in_an_empty_environment(scheduled, rayctl_home, tmp_path):
    """Run the installed line the way cron does (/bin/sh, next to no environment) while a run holds the lock."""
    _recipe, line = scheduled
    fd = hold_lock(rayctl_home)
    try:
        proc = subprocess.run(["/usr/bin/env", "-i", f"HOME={tmp_path}", "/bin/sh", "-c", command_of(line)],
                              capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        os.close(fd)
    assert proc.returncode == 0, proc
    assert proc.stdout == "" and proc.stderr == ""  # everything went to the log
    text = log_of(rayctl_home).read_text()
    assert text.count("still running") == 1, text  # once: stdout is the log, so no second copy
    assert ledger_runs(rayctl_home) == []


def test_a_recipe_broken_after_add_fails_with_exit_2_and_a_ledger_row(cli, scheduled, rayctl_home):
    recipe, line = scheduled
    recipe.write_text(recipe.read_text().replace("kind: batch-infer", "kind: batch-infr"))
    r = cli("schedule", "run", "nightly")
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"error: {recipe}:2:7: field 'kind'" in r.out
    log = log_of(rayctl_home).read_text()
    assert "run started" in log and "run failed (exit 2)" in log and "field 'kind'" in log
    (row,) = ledger_runs(rayctl_home)
    assert row["schedule"] == "nightly" and row["status"] == "failed"
    assert "field 'kind'" in row["reason"] and row["recipe_path"] == str(recipe)
    assert row["log_path"] == str(log_of(rayctl_home))


def test_log_rotation_keeps_n_files(cli, scheduled, rayctl_home):
    recipe, _ = scheduled
    recipe.write_text("name: nightly\nkind: nope\n")  # each run fails fast (exit 2) but logs 4+ lines
    env = {"RAYCTL_LOG_MAX_BYTES": "300", "RAYCTL_LOG_BACKUPS": "2"}
    for i in range(6):
        r = cli("schedule", "run", "nightly", env=env)
        assert r.code == 2, r
    logs = sorted(p.name for p in (rayctl_home / "logs").iterdir())
    assert logs == ["schedule-nightly.log", "schedule-nightly.log.1", "schedule-nightly.log.2"]
    newest = log_of(rayctl_home).read_text()
    assert newest.count("run started") == 1  # rotated at the start of each run once over 300 bytes
    pids = [log_of(rayctl_home, s).read_text().split("[pid ")[1].split("]")[0] for s in ("", ".1", ".2")]
    assert len(set(pids)) == 3  # three different runs, newest first
    assert len(ledger_runs(rayctl_home)) == 6
    r = cli("schedule", "run", "nightly", env={"RAYCTL_LOG_MAX_BYTES": "lots"})
    assert r.code == 2 and "$RAYCTL_LOG_MAX_BYTES='lots': expected a whole number" in r.err, r
    assert_no_traceback(r)


def test_rotation_under_cron_moves_the_redirected_output_to_the_new_file(scheduled, rayctl_home, tmp_path):
    recipe, line = scheduled
    recipe.write_text("name: nightly\nkind: nope\n")
    log_of(rayctl_home).write_text("old line\n" * 100)
    cmd = "RAYCTL_LOG_MAX_BYTES=500 RAYCTL_LOG_BACKUPS=3 " + command_of(line)
    proc = subprocess.run(["/usr/bin/env", "-i", f"HOME={tmp_path}", "/bin/sh", "-c", cmd],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc
    old = log_of(rayctl_home, ".1").read_text()
    new = log_of(rayctl_home).read_text()
    assert old == "old line\n" * 100
    assert "run started" in new and "run failed (exit 2)" in new and "old line" not in new
    assert new.count("run started") == 1


def test_sigterm_is_an_interrupted_run(cli, scheduled, rayctl_home, tmp_path):
    """SIGTERM while the run holds the lock ends it with 130 and an 'interrupted' ledger row."""
    import socket

    # A target that accepts connections and never answers keeps the run busy inside the lock
    # (its probe waits up to 5 s); a FIFO recipe no longer does, it is refused at once.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    recipe = tmp_path / "slow.yaml"
    recipe.write_text(f"name: nightly\nkind: batch-infer\ntarget: http://127.0.0.1:{srv.getsockname()[1]}\n"
                      "workload:\n  entrypoint: python -c 'print(1)'\n")
    env = dict(os.environ, RAYCTL_HOME=str(rayctl_home), HOME=str(tmp_path))
    p = subprocess.Popen([sys.executable, "-m", "rayctl", "schedule", "run", "nightly", "--recipe", str(recipe)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while "run started" not in (log_of(rayctl_home).read_text() if log_of(rayctl_home).exists() else ""):
        assert time.time() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.1)
    p.terminate()
    out, err = p.communicate(timeout=30)
    srv.close()
    assert p.returncode == 130, (out, err)
    assert "interrupted" in out and "Traceback" not in err
    (row,) = ledger_runs(rayctl_home)
    assert row["status"] == "interrupted" and row["schedule"] == "nightly"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_overlapping_runs_launch_exactly_once(cli, make_recipe, tmp_path, rayctl_home, local_cluster):
    """Two `schedule run` of one name at once, on the real local Ray cluster: one launches, one skips.

    The launch uses the session's shared head ($RAYCTL_LOCAL_CLUSTER_DIR, inherited), so
    this test starts no Ray head of its own; it once started one under its temporary
    RAYCTL_HOME and left it running after pytest ended."""
    recipe = make_recipe("nightly", text=(
        "name: nightly\nkind: batch-infer\nworkload:\n"
        "  entrypoint: python -c \"import time; print('sleeping'); time.sleep(10)\"\n"))
    ct = tmp_path / "ct"
    assert cli("schedule", "add", recipe, "--cron", "0 2 * * *", "--crontab-file", ct).code == 0
    env = dict(os.environ, RAYCTL_HOME=str(rayctl_home), HOME=str(tmp_path / "home"))
    first = subprocess.Popen([sys.executable, "-m", "rayctl", "schedule", "run", "nightly"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while "run started" not in (log_of(rayctl_home).read_text() if log_of(rayctl_home).exists() else ""):
        assert time.time() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.2)
    second = subprocess.run([sys.executable, "-m", "rayctl", "schedule", "run", "nightly"], env=env,
                            capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=500)
    assert second.returncode == 0 and "still running" in second.stdout, second
    assert first.returncode == 0, (out, err)
    rows = [r for r in ledger_runs(rayctl_home) if r["schedule"] == "nightly"]
    assert len(rows) == 1 and rows[0]["status"] == "succeeded", rows
    assert rows[0]["ray_address"] == local_cluster.address, rows
    assert not (rayctl_home / "clusters" / "local" / "state.json").exists(), "a second head was started"


def test_a_damaged_registry_does_not_stop_the_crontab_line(scheduled, rayctl_home, tmp_path):
    recipe, line = scheduled
    (rayctl_home / "schedules.json").write_text("{damaged")
    recipe.write_text("name: nightly\nkind: nope\n")  # fails fast after starting, whatever the launcher
    proc = subprocess.run(["/usr/bin/env", "-i", f"HOME={tmp_path}", "/bin/sh", "-c", command_of(line)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc
    text = log_of(rayctl_home).read_text()
    assert "warning:" in text and "registry is damaged" in text and "run started" in text, text
    (row,) = ledger_runs(rayctl_home)
    assert row["schedule"] == "nightly" and row["status"] == "failed"
