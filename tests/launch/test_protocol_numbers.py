"""Issue 9 item 9 for run metrics: a job that prints NaN/Infinity in a `::rayctl::` line
(Python's json.dumps does by default) must not make `rayctl runs --json` or
`rayctl status --json` non-JSON. No Ray needed."""

from __future__ import annotations

import json
import sqlite3

from rayctl.runs.jobs import parse_line
from rayctl.ledger import Ledger


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_protocol_reads_non_finite_numbers_as_null():
    ev = parse_line('::rayctl:: {"type": "metrics", "loss": NaN, "best": -Infinity, "big": 1e400, "rows": 3}')
    assert ev == {"type": "metrics", "loss": None, "best": None, "big": None, "rows": 3}
    assert parse_line('::rayctl:: {"type": "progress", "done": NaN, "total": 3}') is None


def test_runs_json_is_strict_even_with_nan_metrics_in_the_ledger(cli, rayctl_home):
    with Ledger(rayctl_home / "ledger.db") as led:
        rid = led.start_run(recipe="r", kind="train", target="local", status="succeeded")
    con = sqlite3.connect(rayctl_home / "ledger.db")  # as an older rayctl stored them
    con.execute("UPDATE runs SET metrics = ? WHERE id = ?", ('{"loss": NaN, "peak": Infinity, "rows": 2}', rid))
    con.commit()
    con.close()
    r = cli("runs", "--json")
    assert r.code == 0, r
    (row,) = _strict(r.out)["runs"]
    assert row["metrics"] == {"loss": None, "peak": None, "rows": 2}
    r = cli("status", rid, "--json")
    assert r.code == 0, r
    assert _strict(r.out)["metrics"]["loss"] is None
