"""The same round trip through the real `crontab` command (the user's own crontab).

Skipped where cron is not installed. The test saves the user's crontab first and puts it
back afterwards, byte for byte (or removes it again if there was none).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import assert_no_traceback

from .helpers import list_json, our_lines



def _crontab_usable() -> bool:
    if shutil.which("crontab") is None:
        return False
    try:
        p = subprocess.run(["crontab", "-l"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0 or b"no crontab for" in p.stderr  # not e.g. "not allowed to use this program"


pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not _crontab_usable(), reason="the crontab command is not installed or not usable here"),
]

# What `crontab -` accepts and `crontab -l` gives back unchanged (no CRLF: cron refuses it).
FOREIGN = (
    b"# m h  dom mon dow   command\n"
    b"MAILTO=\"\"\n"
    b"\n"
    b"*/5 * * * *  /bin/true --quiet   > /dev/null 2>&1\n"
    b"#0 3 * * * old-disabled-job # rayctl:schedule=nightly\n"
    b"15 4 * * 1-5 echo \"50\\% d\xc3\xa9j\xc3\xa0 vu\" >> /dev/null\n"
)


def crontab_l() -> tuple[int, bytes]:
    p = subprocess.run(["crontab", "-l"], capture_output=True, timeout=30)
    return p.returncode, p.stdout


def set_crontab(content: bytes | None) -> None:
    if content is None:
        subprocess.run(["crontab", "-r"], capture_output=True, timeout=30)
    else:
        subprocess.run(["crontab", "-"], input=content, check=True, capture_output=True, timeout=30)


@pytest.fixture
def user_crontab():
    rc, saved = crontab_l()
    try:
        yield
    finally:
        set_crontab(saved if rc == 0 else None)


@pytest.mark.parametrize("start", [FOREIGN, None], ids=["foreign-lines", "no-crontab"])
def test_round_trip_through_the_crontab_command(cli, make_recipe, user_crontab, start):
    set_crontab(start)
    recipe = make_recipe("rayctl-test-nightly", schedule='"0 0 29 2 *"')  # Feb 29 at 00:00: rarely fires
    r = cli("schedule", "add", recipe)
    assert r.code == 0, r
    assert "in your crontab" in r.out
    rc, content = crontab_l()
    assert rc == 0
    (line,) = our_lines(content)
    assert content == (start or b"") + line + b"\n"
    (row,) = list_json(cli)
    assert row["state"] == "installed" and row["crontab"] is None and row["name"] == "rayctl-test-nightly"

    r = cli("schedule", "remove", "rayctl-test-nightly")
    assert r.code == 0 and "the user's crontab" in r.out, r
    rc, content = crontab_l()
    if start is None:
        assert rc != 0  # back to "no crontab for <user>", as it was
    else:
        assert rc == 0 and content == start


def test_an_overlong_line_is_refused_before_crontab_sees_it(cli, make_recipe, user_crontab):
    set_crontab(FOREIGN)
    recipe = make_recipe("rayctl-test-nightly", schedule='"0 0 29 2 *"')
    r = cli("schedule", "add", recipe, "--env", "X=" + "y" * 990)  # over cron's command length
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "cron refuses commands of 1000 bytes or more" in r.err
    assert crontab_l() == (0, FOREIGN)
