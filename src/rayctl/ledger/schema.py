"""The ledger's tables, its schema versions and the migrations between them.

`PRAGMA user_version` holds the schema version. A new database gets the whole current
DDL; an older one is brought up step by step (`MIGRATIONS[v]` takes version v to v+1)
in the same transaction as the version bump, so a crash leaves it at its old version.

- 1: `runs`, `segments`, `events`.
- 2: `cloud_clusters` (every cloud cluster / managed job rayctl asked for; rayctl 1 made
  it on first use, outside the version) and `runs.budget` (the budget a cloud run was
  started with, as JSON, so that a reattached run keeps it).

A file rayctl cannot use is a `LedgerError` (exit 2) naming it; rayctl never re-creates,
migrates or writes over such a file.
"""

from __future__ import annotations

import os
import sqlite3

from ..errors import InputError

SCHEMA_VERSION = 2

_RUN_COLUMNS_V1 = {
    "id": "TEXT PRIMARY KEY",
    "recipe": "TEXT NOT NULL",
    "recipe_path": "TEXT",
    "recipe_sha256": "TEXT",
    "kind": "TEXT NOT NULL",
    "target": "TEXT NOT NULL",
    "cluster": "TEXT",
    "cloud": "TEXT",
    "region": "TEXT",
    "zone": "TEXT",
    "instance_type": "TEXT",
    "accelerator": "TEXT",
    "accelerator_count": "INTEGER",
    "spot": "INTEGER",
    "nodes": "INTEGER NOT NULL DEFAULT 1",
    "hourly_usd": "REAL NOT NULL DEFAULT 0",
    "started_at": "TEXT NOT NULL",
    "ended_at": "TEXT",
    "status": "TEXT NOT NULL",
    "reason": "TEXT",
    "cost_usd": "REAL",
    "rows": "INTEGER",
    "input_tokens": "INTEGER",
    "output_tokens": "INTEGER",
    "duration_s": "REAL",
    "ray_job_id": "TEXT",
    "ray_address": "TEXT",
    "log_path": "TEXT",
    "schedule": "TEXT",
    "metrics": "TEXT",  # JSON: everything the workload reported
}
RUN_COLUMNS = {**_RUN_COLUMNS_V1, "budget": "TEXT"}  # JSON: {max_usd, max_hours} of a cloud run (v2)

CLUSTER_COLUMNS = {
    "name": "TEXT PRIMARY KEY",
    "run_id": "TEXT",
    "mode": "TEXT NOT NULL",  # 'managed' (sky.jobs.launch) | 'cluster' (sky.launch)
    "job_id": "INTEGER",  # managed job id, or the job id on the cluster
    "cloud": "TEXT", "region": "TEXT", "zone": "TEXT", "instance_type": "TEXT",
    "spot": "INTEGER",
    "nodes": "INTEGER",
    "candidates": "TEXT",  # JSON: the plan candidates in the task, in order (for pricing)
    "state": "TEXT NOT NULL",
    "created_at": "TEXT NOT NULL",
    "updated_at": "TEXT NOT NULL",
    "detail": "TEXT",
}


def _table(name: str, columns: dict) -> str:
    cols = ", ".join(f'"{k}" {v}' for k, v in columns.items())
    return f"CREATE TABLE IF NOT EXISTS {name} ({cols})"


def _ddl(run_columns: dict) -> list[str]:
    return [
        _table("runs", run_columns),
        "CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at)",
        "CREATE INDEX IF NOT EXISTS runs_recipe ON runs(recipe)",
        """CREATE TABLE IF NOT EXISTS segments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(id),
            started_at TEXT NOT NULL,
            ended_at TEXT,
            cloud TEXT, region TEXT, zone TEXT, instance_type TEXT,
            spot INTEGER NOT NULL DEFAULT 0,
            nodes INTEGER NOT NULL DEFAULT 1,
            hourly_usd_per_node REAL NOT NULL DEFAULT 0)""",
        "CREATE INDEX IF NOT EXISTS segments_run ON segments(run_id)",
        """CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(id),
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            cloud TEXT, region TEXT, zone TEXT, instance_type TEXT,
            detail TEXT)""",
        "CREATE INDEX IF NOT EXISTS events_run ON events(run_id)",
        "CREATE INDEX IF NOT EXISTS events_kind ON events(kind)",
    ]


_CLUSTERS_DDL = [_table("cloud_clusters", CLUSTER_COLUMNS),
                 "CREATE INDEX IF NOT EXISTS cloud_clusters_run ON cloud_clusters(run_id)"]

DDL = _ddl(RUN_COLUMNS) + _CLUSTERS_DDL  # a new ledger, at SCHEMA_VERSION
_DDL_V1 = _ddl(_RUN_COLUMNS_V1)

# MIGRATIONS[v]: the statements that take a ledger of schema v to v + 1.
MIGRATIONS: dict[int, list[str]] = {
    1: ['ALTER TABLE runs ADD COLUMN "budget" TEXT', *_CLUSTERS_DDL],  # the table may be there already
}
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION))


def tables_at(version: int) -> tuple[dict[str, set], set[str]]:
    """({table: the columns it must have}, the tables that must be there) at schema `version`."""
    tables = {"runs": set(RUN_COLUMNS if version >= 2 else _RUN_COLUMNS_V1),
              "segments": {"id", "run_id", "started_at", "ended_at", "cloud", "region", "zone", "instance_type",
                           "spot", "nodes", "hourly_usd_per_node"},
              "events": {"id", "run_id", "at", "kind", "cloud", "region", "zone", "instance_type", "detail"},
              "cloud_clusters": set(CLUSTER_COLUMNS)}
    required = set() if version == 0 else set(tables) if version >= 2 else set(tables) - {"cloud_clusters"}
    return tables, required


class LedgerError(InputError):
    """The ledger file cannot be used as it is (exit 2); it is left untouched."""


def ledger_error(path, err: BaseException | str) -> LedgerError:
    """A LedgerError for `path` saying what is wrong (from an sqlite3/OS error or a text) and what to do."""
    p = str(path)
    what = err if isinstance(err, str) else (getattr(err, "strerror", None) or str(err))
    name = getattr(err, "sqlite_errorname", "") or ""
    aside = (f"rayctl leaves it as it is. Move it aside (mv {p} {p}.damaged) and rayctl starts a new, empty "
             "ledger, or point RAYCTL_HOME at another folder; restore it from a backup to keep its runs")
    if "READONLY" in name or "readonly" in str(what) or isinstance(err, PermissionError):
        return LedgerError(f"ledger {p}: cannot write to it ({what}). rayctl records every run there, so it "
                           f"must be writable: make the file and its folder writable (chmod u+w {p} "
                           f"{os.path.dirname(p) or '.'}), or set RAYCTL_HOME to a writable folder")
    if "CANTOPEN" in name or isinstance(err, OSError):
        return LedgerError(f"ledger {p}: cannot open it ({what}); check that the path and its folder exist, are "
                           "readable and writable, or set RAYCTL_HOME to another folder")
    if "NOTADB" in name or "CORRUPT" in name or "not a database" in str(what) or "malformed" in str(what):
        return LedgerError(f"ledger {p} is not a readable SQLite database ({what}); it is damaged or is some "
                           f"other file. {aside}")
    return LedgerError(f"ledger {p}: {what}. {aside}")


def version_of(db: sqlite3.Connection, path) -> int:
    """The schema version (reads the header: a non-database fails here); a newer one than known is refused."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ledger_error(path, f"it was written by a newer rayctl (schema {version}; this rayctl reads "
                                 f"up to {SCHEMA_VERSION}). Upgrade rayctl to read it")
    return version


def check(db: sqlite3.Connection, path) -> tuple[int, set[str]]:
    """(schema version, rayctl tables present) of a database rayctl can use; LedgerError otherwise.
    Reads only, so that a foreign file stays byte-for-byte as it was."""
    version = version_of(db, path)
    present = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables, required = tables_at(version)
    foreign = present - set(tables) - {"sqlite_sequence"}
    if version == 0 and foreign:
        raise ledger_error(path, "this SQLite database is not a rayctl ledger (it holds table(s) "
                                 f"{', '.join(sorted(foreign)[:5])})")
    for table, cols in tables.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if (not have and table in required) or (have and cols - have):
            missing = "the table" if not have else "column(s) " + ", ".join(sorted(cols - have)[:6])
            raise ledger_error(path, f"its table '{table}' lacks {missing}: it is not a rayctl ledger of "
                                     f"schema {version or SCHEMA_VERSION}")
    return version, present & set(tables)


def upgrade(db: sqlite3.Connection, path) -> bool:
    """Bring the ledger to SCHEMA_VERSION inside the caller's write transaction; False when it already was.

    A new (empty) database gets the whole DDL; one of schema 0 (rayctl before versions) gets
    the tables it lacks, then every migration in turn."""
    version, present = check(db, path)  # again, under the write lock: another rayctl may have migrated it
    if version == SCHEMA_VERSION:
        return False
    if version == 0 and not present:
        steps = DDL
    else:
        steps = (_DDL_V1 if version == 0 else []) + [
            s for v in range(max(version, 1), SCHEMA_VERSION) for s in MIGRATIONS[v]]
    for statement in steps:
        db.execute(statement)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return True
