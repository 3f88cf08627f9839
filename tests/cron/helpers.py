"""Helpers for schedule tests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

# A crontab as people write them: comments, variables, blank lines, odd spacing, a
# percent sign, UTF-8, a disabled line that mentions a rayctl tag, CRLF. rayctl must
# give every byte of it back.
FOREIGN = (
    b"# m h  dom mon dow   command\n"
    b"MAILTO=ops@example.com\n"
    b"SHELL=/bin/bash\n"
    b"\n"
    b"*/5 * * * *  /usr/local/bin/backup --quiet   > /dev/null 2>&1\n"
    b"#0 3 * * * old-disabled-job # rayctl:schedule=nightly\n"
    b"@reboot /usr/bin/startup.sh    \t\n"
    b"15 4 * * 1-5 echo \"50\\% d\xc3\xa9j\xc3\xa0 vu\" >> /tmp/x.log\r\n"
    b"0 1 1 * * monthly-report   # keep me\n"
)

RECIPE = """\
name: {name}
kind: batch-infer
{schedule}workload:
  entrypoint: python -c "print('hello from cron')"
"""


def our_lines(content: bytes) -> list[bytes]:
    return [ln for ln in content.splitlines() if b"# rayctl:schedule=" in ln and not ln.startswith(b"#")]


def command_of(line: bytes | str) -> str:
    """The shell command of a crontab line, as cron hands it to /bin/sh (\\% -> %)."""
    text = line.decode() if isinstance(line, bytes) else line
    fields = text.split(None, 5)
    assert len(fields) == 6, text
    return fields[5].replace("\\%", "%")


def ledger_runs(home: Path) -> list[dict]:
    db = home / "ledger.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY started_at")]
    finally:
        con.close()


def list_json(cli, *args) -> list[dict]:
    r = cli("schedule", "list", "--json", *args)
    assert r.code == 0, r
    return json.loads(r.out)["schedules"]

