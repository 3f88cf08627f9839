"""`schedule add/list/remove` against a real crontab file: tagged lines in, tagged lines out,
every other byte untouched; every bad input a one-paragraph error with exit code 2."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys

import pytest
from croniter import croniter

from tests.conftest import assert_no_traceback

from .helpers import FOREIGN, command_of, list_json, our_lines

pytestmark = pytest.mark.timeout(120)


def test_add_list_remove_keeps_foreign_lines_byte_for_byte(cli, make_recipe, crontab_file, rayctl_home):
    nightly = make_recipe("nightly")  # schedule: "0 2 * * *" in the recipe
    hourly = make_recipe("hourly", schedule=None)

    r = cli("schedule", "add", nightly, "--crontab-file", crontab_file)
    assert r.code == 0, r
    assert "added schedule 'nightly' (0 2 * * *)" in r.out
    r = cli("schedule", "add", hourly, "--cron", "*/15 9-17 * * mon-fri", "--name", "hourly-work",
            "--crontab-file", crontab_file)
    assert r.code == 0, r

    content = crontab_file.read_bytes()
    assert content.startswith(FOREIGN)  # appended after everything that was there
    lines = our_lines(content)
    assert len(lines) == 2
    assert lines[0].startswith(b"0 2 * * * ") and lines[0].endswith(b" # rayctl:schedule=nightly")
    assert lines[1].startswith(b"*/15 9-17 * * mon-fri ") and lines[1].endswith(b"# rayctl:schedule=hourly-work")
    assert content == FOREIGN + lines[0] + b"\n" + lines[1] + b"\n"

    before = dt.datetime.now().astimezone()
    rows = {r["name"]: r for r in list_json(cli)}
    after = dt.datetime.now().astimezone()
    assert set(rows) == {"nightly", "hourly-work"}
    for name, expr in (("nightly", "0 2 * * *"), ("hourly-work", "*/15 9-17 * * mon-fri")):
        row = rows[name]
        assert row["state"] == "installed"
        assert row["cron"] == expr
        assert row["crontab"] == str(crontab_file)
        nxt = dt.datetime.fromisoformat(row["next_runs"][0])
        assert nxt in (croniter(expr, before).get_next(dt.datetime), croniter(expr, after).get_next(dt.datetime))
    assert rows["nightly"]["recipe"] == str(nightly)
    three = list_json(cli, "--next", "3")
    assert all(len(r["next_runs"]) == 3 for r in three)

    text = cli("schedule", "list")
    assert text.code == 0 and "nightly" in text.out and "installed" in text.out

    r = cli("schedule", "remove", "nightly")
    assert r.code == 0, r
    assert "removed schedule 'nightly' (1 line from crontab file" in r.out
    assert crontab_file.read_bytes() == FOREIGN + lines[1] + b"\n"
    r = cli("schedule", "remove", "hourly-work")
    assert r.code == 0, r
    assert crontab_file.read_bytes() == FOREIGN
    assert list_json(cli) == []


def test_the_line_is_cron_safe(cli, make_recipe, tmp_path, rayctl_home):
    # A folder with a space and a percent sign: quoted for sh, % escaped for cron.
    folder = tmp_path / "my recipes 50%"
    recipe = make_recipe("nightly", folder=folder)
    ct = tmp_path / "ct"
    r = cli("schedule", "add", recipe, "--crontab-file", ct, "--env", "AWS_PROFILE=batch")
    assert r.code == 0, r
    (line,) = our_lines(ct.read_bytes())
    text = line.decode()
    assert "50\\%" in text and "50%" not in text.replace("50\\%", "")
    cmd = command_of(line)
    assert f"RAYCTL_HOME={rayctl_home.resolve()}" in cmd
    assert f"PATH={os.path.dirname(sys.executable)}:" in cmd
    assert "AWS_PROFILE=batch" in cmd
    assert f"{sys.executable} -m rayctl schedule run nightly --recipe '{recipe}'" in cmd
    log = rayctl_home.resolve() / "logs" / "schedule-nightly.log"
    assert cmd.endswith(f">>{log} 2>&1 # rayctl:schedule=nightly")
    assert log.parent.is_dir()  # the line appends there from its first run on
    assert len(cmd.encode()) < 1000  # cron refuses longer commands


def test_replace_and_idempotent_add(cli, make_recipe, crontab_file):
    recipe = make_recipe("nightly")
    assert cli("schedule", "add", recipe, "--crontab-file", crontab_file).code == 0
    first = crontab_file.read_bytes()
    crontab_file.write_bytes(first + b"30 5 * * * after-ours\n")
    r = cli("schedule", "add", recipe, "--crontab-file", crontab_file)
    assert r.code == 0 and "unchanged schedule 'nightly'" in r.out, r
    r = cli("schedule", "add", recipe, "--cron", "0 3 * * *", "--crontab-file", crontab_file)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "a schedule named 'nightly' exists" in r.err and "--replace" in r.err
    r = cli("schedule", "add", recipe, "--cron", "0 3 * * *", "--crontab-file", crontab_file, "--replace")
    assert r.code == 0 and "replaced schedule 'nightly'" in r.out, r
    content = crontab_file.read_bytes()
    (line,) = our_lines(content)
    assert line.startswith(b"0 3 * * * ")
    # replaced where it was: the foreign line added after it is still after it
    assert content == FOREIGN + line + b"\n" + b"30 5 * * * after-ours\n"


def test_concurrent_adds_lose_nothing(cli, make_recipe, crontab_file, rayctl_home, tmp_path):
    import subprocess

    env = dict(os.environ, RAYCTL_HOME=str(rayctl_home), HOME=str(tmp_path / "home"))
    procs = []
    for i in range(6):
        recipe = make_recipe(f"job-{i}")
        procs.append(subprocess.Popen([sys.executable, "-m", "rayctl", "schedule", "add", str(recipe),
                                       "--crontab-file", str(crontab_file)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    content = crontab_file.read_bytes()
    assert content.startswith(FOREIGN)
    assert sorted(ln.rsplit(b"=", 1)[1] for ln in our_lines(content)) == [f"job-{i}".encode() for i in range(6)]
    reg = json.loads((rayctl_home / "schedules.json").read_text())["schedules"]
    assert sorted(reg) == [f"job-{i}" for i in range(6)]


def test_list_reports_lines_changed_or_removed_by_hand(cli, make_recipe, crontab_file):
    a, b = make_recipe("aaa"), make_recipe("bbb")
    assert cli("schedule", "add", a, "--crontab-file", crontab_file).code == 0
    assert cli("schedule", "add", b, "--crontab-file", crontab_file).code == 0
    content = crontab_file.read_bytes()
    la, lb = our_lines(content)
    edited = content.replace(la + b"\n", b"").replace(lb, lb.replace(b"0 2 * * *", b"0 4 * * *", 1))
    edited += b"0 6 * * * something # rayctl:schedule=stray\n"
    crontab_file.write_bytes(edited)
    rows = {r["name"]: r for r in list_json(cli)}
    assert rows["aaa"]["state"] == "missing"
    assert rows["bbb"]["state"] == "modified"
    assert rows["stray"]["state"] == "unregistered"
    # remove takes out only the named line, even one rayctl's registry does not know
    r = cli("schedule", "remove", "stray", "--crontab-file", crontab_file)
    assert r.code == 0, r
    assert crontab_file.read_bytes() == edited.replace(b"0 6 * * * something # rayctl:schedule=stray\n", b"")


def test_last_line_without_newline_gets_one(cli, make_recipe, tmp_path):
    ct = tmp_path / "ct"
    ct.write_bytes(b"0 1 * * * no-newline-at-end")
    assert cli("schedule", "add", make_recipe("nightly"), "--crontab-file", ct).code == 0
    assert ct.read_bytes().startswith(b"0 1 * * * no-newline-at-end\n0 2 * * * ")
    assert cli("schedule", "remove", "nightly").code == 0
    # cron refuses a crontab whose last line has no newline, so the one added stays
    assert ct.read_bytes() == b"0 1 * * * no-newline-at-end\n"


def test_crontab_file_mode_is_kept(cli, make_recipe, crontab_file):
    crontab_file.chmod(0o600)
    assert cli("schedule", "add", make_recipe("nightly"), "--crontab-file", crontab_file).code == 0
    assert crontab_file.stat().st_mode & 0o777 == 0o600


def test_cron_user_column_for_cron_d_files(cli, make_recipe, tmp_path):
    ct = tmp_path / "rayctl"
    r = cli("schedule", "add", make_recipe("nightly"), "--crontab-file", ct, "--cron-user", "batch")
    assert r.code == 0, r
    (line,) = our_lines(ct.read_bytes())
    assert line.startswith(b"0 2 * * * batch /usr/bin/env ")


BAD_CRON = [
    ("61 2 * * *", "minute field: 61 is out of range 0-59"),
    ("0 2 * *", "has 4 field(s), expected five fields"),
    ("0 0 2 * * *", "cron has no seconds or year field"),
    ("@reboot", "@reboot is not a time of day"),
    ("@fortnightly", "is not a cron nickname"),
    ("0 0 31 2 *", "never fires"),
    ("0 2 L * *", "day-of-month field: 'L' is not a number 1-31"),
    ("0 2 * * 1#2", "'#' is not cron syntax"),
    ("5/10 * * * *", "write 5-59/10"),
    ("*/0 * * * *", "a step of 0 never advances"),
    ("5-1 * * * *", "runs backwards"),
    ("0 2 * smarch *", "month field: 'smarch' is not a number 1-12 or a name"),
    ("0 2 * * *\n* * * * * rm -rf ~", "line break"),
    ("", "is empty"),
]


@pytest.mark.parametrize("expr,needle", BAD_CRON, ids=[b[0].split("\n")[0] or "empty" for b in BAD_CRON])
def test_bad_cron_flag_is_exit_2_naming_the_flag(cli, make_recipe, crontab_file, expr, needle):
    r = cli("schedule", "add", make_recipe("nightly", schedule=None), "--cron", expr, "--crontab-file", crontab_file)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert r.err.startswith("rayctl: error: --cron "), r.err
    assert needle in r.err, r.err
    assert crontab_file.read_bytes() == FOREIGN


def test_bad_schedule_in_recipe_names_file_line_and_field(cli, make_recipe, crontab_file):
    recipe = make_recipe("nightly", schedule='"0 25 * * *"')
    r = cli("schedule", "add", recipe, "--crontab-file", crontab_file)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"{recipe}:3:11: field 'schedule': '0 25 * * *' is not a cron expression cron can run: " \
           "hour field: 25 is out of range 0-23" in r.err
    assert crontab_file.read_bytes() == FOREIGN


@pytest.mark.parametrize("text,needle", [
    ("name: nightly\nkind: batch-infer\nschedule: 5\n", ":3:11: field 'schedule': expected a string, got number 5"),
    ("name: nightly\nkind: batch-infr\n", ":2:7: field 'kind'"),
    ("name: nightly\nkind: batch-infer\nschedul: '0 2 * * *'\n", "unknown field 'schedul'; did you mean 'schedule'?"),
    ("name: [oops\n", "invalid YAML"),
])
def test_invalid_recipe_is_exit_2_with_file_and_line(cli, make_recipe, crontab_file, text, needle):
    recipe = make_recipe(text=text, filename="bad.yaml")
    r = cli("schedule", "add", recipe, "--cron", "0 2 * * *", "--crontab-file", crontab_file)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert str(recipe) in r.err and needle in r.err, r.err
    assert crontab_file.read_bytes() == FOREIGN


@pytest.mark.parametrize("args,needle", [
    (["--name", "Nightly_Job"], "--name 'Nightly_Job': a schedule name is lower-case"),
    (["--env", "PATH=/tmp"], "PATH is set by rayctl"),
    (["--env", "NOEQUALS"], "expected KEY=VALUE"),
    (["--env", "HF_TOKEN=hf_abcdefghijklmnop"], "--env HF_TOKEN=...: looks like a credential"),
    (["--env", "DATABASE_URL=postgres://u:pw1234567@db/x"], "--env DATABASE_URL=...: looks like a credential"),
    (["--cron-user", "bad user"], "--cron-user 'bad user': not a user name"),
])
def test_bad_flags_are_exit_2(cli, make_recipe, crontab_file, args, needle):
    r = cli("schedule", "add", make_recipe("nightly"), "--crontab-file", crontab_file, *args)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert needle in r.err, r.err
    assert "abcdefghijklmnop" not in r.err and "pw1234567" not in r.err
    assert crontab_file.read_bytes() == FOREIGN


def test_other_input_errors(cli, make_recipe, crontab_file, tmp_path, rayctl_home):
    r = cli("schedule", "add", make_recipe("nightly", schedule=None), "--crontab-file", crontab_file)
    assert r.code == 2 and "no schedule: pass --cron" in r.err, r
    r = cli("schedule", "add", tmp_path / "missing.yaml", "--cron", "0 2 * * *", "--crontab-file", crontab_file)
    assert r.code == 2 and "missing.yaml: no such file" in r.err, r
    r = cli("schedule", "add", make_recipe("nightly"), "--crontab-file", tmp_path / "nope" / "ct")
    assert r.code == 2 and "does not exist" in r.err, r
    r = cli("schedule", "remove", "ghost", "--crontab-file", crontab_file)
    assert r.code == 2 and "no schedule named 'ghost'" in r.err, r
    r = cli("schedule", "run", "ghost")
    assert r.code == 2 and "no schedule named 'ghost'" in r.err, r
    rayctl_home.mkdir(parents=True, exist_ok=True)
    (rayctl_home / "schedules.json").write_text('{"version": 1, "schedules": {\n  "x": [}\n')
    r = cli("schedule", "list")
    assert r.code == 2 and "schedules.json:2:" in r.err and "registry is damaged" in r.err, r
    for res in (r,):
        assert_no_traceback(res)
    assert crontab_file.read_bytes() == FOREIGN


def test_without_the_crontab_command_the_user_crontab_is_a_clear_error(cli, make_recipe, tmp_path):
    # PATH without cron's directories: as on a machine where cron is not installed
    bare = tmp_path / "bin"
    bare.mkdir()
    r = cli("schedule", "add", make_recipe("nightly"), env={"PATH": str(bare)})
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "the `crontab` command is not installed" in r.err and "--crontab-file" in r.err


def test_remove_with_another_crontab_file_cleans_both(cli, make_recipe, crontab_file, tmp_path):
    assert cli("schedule", "add", make_recipe("nightly"), "--crontab-file", crontab_file).code == 0
    copy = tmp_path / "copy"
    copy.write_bytes(crontab_file.read_bytes())
    r = cli("schedule", "remove", "nightly", "--crontab-file", copy)
    assert r.code == 0 and "(2 lines from crontab file" in r.out and " and crontab file " in r.out, r
    assert crontab_file.read_bytes() == FOREIGN and copy.read_bytes() == FOREIGN


def test_without_croniter_the_error_says_what_to_install(make_recipe, crontab_file, rayctl_home):
    import subprocess

    code = ("import sys; sys.modules['croniter'] = None; "  # as if the [cron] extra were not installed
            "from rayctl.cli.main import main; main(sys.argv[1:])")
    p = subprocess.run([sys.executable, "-c", code, "schedule", "add", str(make_recipe("nightly")),
                        "--crontab-file", str(crontab_file)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, RAYCTL_HOME=str(rayctl_home)))
    assert p.returncode == 1, p
    assert "schedules need the croniter package: pip install 'rayctl[cron]'" in p.stderr
    assert "Traceback" not in p.stderr
    assert crontab_file.read_bytes() == FOREIGN
