"""Issue 9 item 9 for run metrics: a job that prints NaN/Infinity in a `::rayctl::` line
(Python's json.dumps does by default) must not make `rayctl runs --json` or
`rayctl status --json` non-JSON. How the protocol reads such lines (as null) is in
tests/test_protocol.py; this is the ledger side: metrics an older rayctl stored. No Ray needed."""

from __future__ import annotations

import json
import sqlite3

from rayctl.ledger import Ledger


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


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
