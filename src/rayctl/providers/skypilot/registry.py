"""Every cloud cluster / managed job rayctl created, in a `cloud_clusters` table of the ledger.

Rows are written *before* SkyPilot is asked to provision, so a crash at any point
still leaves a record that `rayctl down --all` finds. States:

- `launching`: the launch request was sent (the cluster may or may not exist yet);
- `up`: provisioned and running (or serving);
- `down`: torn down (by rayctl, by SkyPilot's managed-jobs controller at job end, or
  autodown);
- `teardown_failed`: rayctl tried and failed: the cluster may still be billing; `detail`
  says what failed and `rayctl down --all` retries.

The table lives in the ledger database (same WAL, same busy timeout) and is created
on first use, so older ledgers keep working.
"""

from __future__ import annotations

from ...ledger import Ledger, now

LIVE = ("launching", "up", "teardown_failed")

_DDL = """
CREATE TABLE IF NOT EXISTS cloud_clusters (
    name TEXT PRIMARY KEY,
    run_id TEXT,
    mode TEXT NOT NULL,          -- 'managed' (sky.jobs.launch) | 'cluster' (sky.launch)
    job_id INTEGER,              -- managed job id, or the job id on the cluster
    cloud TEXT, region TEXT, zone TEXT, instance_type TEXT,
    spot INTEGER,
    nodes INTEGER,
    candidates TEXT,             -- JSON: the plan candidates in the task, in order (for pricing)
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS cloud_clusters_run ON cloud_clusters(run_id);
"""


def _ensure(ledger: Ledger) -> None:
    if not getattr(ledger, "_rayctl_cloud_table", False):
        ledger._db.executescript(_DDL)
        ledger._rayctl_cloud_table = True


def add(ledger: Ledger, name: str, *, run_id: str, mode: str, **cols) -> None:
    _ensure(ledger)
    at = now()
    row = {"name": name, "run_id": run_id, "mode": mode, "state": "launching", "created_at": at,
           "updated_at": at, **cols}
    keys = ", ".join(row)
    with ledger._tx():
        ledger._db.execute(f"INSERT OR REPLACE INTO cloud_clusters ({keys}) VALUES ({', '.join('?' for _ in row)})",
                           [int(v) if isinstance(v, bool) else v for v in row.values()])


def update(ledger: Ledger, name: str, **cols) -> None:
    _ensure(ledger)
    cols["updated_at"] = now()
    sets = ", ".join(f"{k} = ?" for k in cols)
    with ledger._tx():
        ledger._db.execute(f"UPDATE cloud_clusters SET {sets} WHERE name = ?",
                           [int(v) if isinstance(v, bool) else v for v in cols.values()] + [name])


def get(ledger: Ledger, name: str) -> dict | None:
    _ensure(ledger)
    r = ledger._db.execute("SELECT * FROM cloud_clusters WHERE name = ?", (name,)).fetchone()
    return dict(r) if r else None


def for_run(ledger: Ledger, run_id: str) -> dict | None:
    _ensure(ledger)
    r = ledger._db.execute("SELECT * FROM cloud_clusters WHERE run_id = ? ORDER BY created_at DESC",
                           (run_id,)).fetchone()
    return dict(r) if r else None


def all_rows(ledger: Ledger, live_only: bool = False) -> list[dict]:
    _ensure(ledger)
    q = "SELECT * FROM cloud_clusters"
    args: list = []
    if live_only:
        q += f" WHERE state IN ({', '.join('?' for _ in LIVE)})"
        args = list(LIVE)
    return [dict(r) for r in ledger._db.execute(q + " ORDER BY created_at", args).fetchall()]
