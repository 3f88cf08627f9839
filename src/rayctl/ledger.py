"""The run ledger: one SQLite database (WAL mode) under `$RAYCTL_HOME/ledger.db`.

Tables:
- `runs`: one row per launch — recipe (name, path, sha256), kind, target, where it ran
  (cloud/region/zone/instance/spot, $/h for the cluster; 0 locally), start/end, status
  and why, rows and tokens from the workload's metrics, the Ray job id and address,
  the log file, and the cost.
- `segments`: billed intervals of a run's cluster, one per incarnation (a spot
  recovery opens a new segment on the new offer). Cost = sum of $/h x hours.
- `events`: what happened to a run (provisioned, recovered, preempted, teardown
  failed, budget stop, ...), with where it happened.

Writers use short transactions with a busy timeout, so concurrent cron runs and a
live launch never corrupt or lose rows.

A ledger rayctl cannot use -- not an SQLite file (damaged, or something else at that
path), read-only, of another schema, or written by a newer rayctl -- is a `LedgerError`
(exit 2) naming the file, what is wrong and what to do. rayctl never re-creates,
migrates or writes over such a file: the runs recorded in it stay as they are. A write
probe at open time makes a read-only ledger fail before a launch starts anything.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from .settings import rayctl_home
from .errors import InputError

SCHEMA_VERSION = 1

# queued: waiting for CPUs/GPUs that other rayctl runs on the cluster hold (`launch --wait`);
# lost: the run's cluster went away while nobody followed it (found by `rayctl runs`/`status`).
STATUSES = ("pending", "provisioning", "queued", "running", "serving", "succeeded", "failed", "interrupted",
            "stopped", "lost")
FINAL = ("succeeded", "failed", "interrupted", "stopped", "lost")

_RUN_COLUMNS = {
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

_DDL = f"""
CREATE TABLE IF NOT EXISTS runs ({", ".join(f'"{k}" {v}' for k, v in _RUN_COLUMNS.items())});
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE INDEX IF NOT EXISTS runs_recipe ON runs(recipe);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    started_at TEXT NOT NULL,
    ended_at TEXT,
    cloud TEXT, region TEXT, zone TEXT, instance_type TEXT,
    spot INTEGER NOT NULL DEFAULT 0,
    nodes INTEGER NOT NULL DEFAULT 1,
    hourly_usd_per_node REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS segments_run ON segments(run_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    cloud TEXT, region TEXT, zone TEXT, instance_type TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
"""


def now() -> str:
    """UTC timestamp, ISO 8601 with seconds precision and a Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def new_run_id(recipe: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{recipe[:40]}-{stamp}-{secrets.token_hex(2)}"


class LedgerError(InputError):
    """The ledger file cannot be used as it is (exit 2); it is left untouched."""


# Columns each table must have (a subset is enough: rayctl reads these by name).
_TABLES = {"runs": set(_RUN_COLUMNS),
           "segments": {"id", "run_id", "started_at", "ended_at", "cloud", "region", "zone", "instance_type",
                        "spot", "nodes", "hourly_usd_per_node"},
           "events": {"id", "run_id", "at", "kind", "cloud", "region", "zone", "instance_type", "detail"}}


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


class Ledger:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else rayctl_home() / "ledger.db"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LedgerError(f"ledger {self.path}: cannot create its folder {self.path.parent} ({e.strerror}); "
                              "set RAYCTL_HOME to a writable folder") from None
        if self.path.exists() and not self.path.is_file():
            raise ledger_error(self.path, "this is not a regular file (a folder or a device?)")
        self._db = None
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._open()
        except sqlite3.Error as e:
            self.close()
            raise ledger_error(self.path, e) from None
        except LedgerError:
            self.close()
            raise

    def _open(self) -> None:
        db = self._db
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=30000")
        version = db.execute("PRAGMA user_version").fetchone()[0]  # reads the header: a non-database fails here
        if version > SCHEMA_VERSION:
            raise ledger_error(self.path, f"it was written by a newer rayctl (schema {version}; this rayctl reads "
                                          f"up to {SCHEMA_VERSION}). Upgrade rayctl to read it")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = set(_TABLES) | {"sqlite_sequence", "cloud_clusters"}  # cloud_registry adds the last
        if version == 0 and tables - ours:
            raise ledger_error(self.path, "this SQLite database is not a rayctl ledger (it holds table(s) "
                                          f"{', '.join(sorted(tables - ours)[:5])})")
        # Before any write, so that a foreign file stays byte-for-byte as it was.
        self._check_tables(require_all=version == SCHEMA_VERSION)
        db.execute("PRAGMA journal_mode=WAL")  # a write: a read-only file or folder fails here
        db.execute("BEGIN IMMEDIATE")  # write probe (rolled back): fail now, not half-way through a launch
        try:
            db.execute(f"PRAGMA user_version={int(version)}")
        finally:
            db.execute("ROLLBACK")
        db.execute("PRAGMA foreign_keys=ON")
        if version < SCHEMA_VERSION:
            db.executescript(_DDL)  # idempotent (IF NOT EXISTS); commits by itself
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _check_tables(self, require_all: bool) -> None:
        """Each rayctl table has its columns (tables not there yet pass unless `require_all`)."""
        for table, cols in _TABLES.items():
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            if (not have and require_all) or (have and cols - have):
                missing = "the table" if not have else "column(s) " + ", ".join(sorted(cols - have)[:6])
                raise ledger_error(self.path, f"its table '{table}' lacks {missing}: it is not a rayctl ledger of "
                                              f"schema {SCHEMA_VERSION}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _tx(self):
        db = self._db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, et, ev, tb):
                db.execute("ROLLBACK" if et else "COMMIT")
                return False

        return _Tx()

    # ------------------------------------------------------------------ runs

    def start_run(self, *, recipe: str, kind: str, target: str, run_id: str | None = None,
                  status: str = "pending", **fields: Any) -> str:
        rid = run_id or new_run_id(recipe)
        row = {"id": rid, "recipe": recipe, "kind": kind, "target": target, "status": status,
               "started_at": fields.pop("started_at", None) or now(), **fields}
        self._check(row)
        cols = ", ".join(f'"{k}"' for k in row)
        with self._tx():
            self._db.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' for _ in row)})",
                             [_db_value(v) for v in row.values()])
        return rid

    def update(self, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        self._check(fields)
        sets = ", ".join(f'"{k}" = ?' for k in fields)
        with self._tx():
            cur = self._db.execute(f"UPDATE runs SET {sets} WHERE id = ?",
                                   [_db_value(v) for v in fields.values()] + [run_id])
            if cur.rowcount == 0:
                raise KeyError(run_id)

    def finish(self, run_id: str, status: str, reason: str | None = None, **fields: Any) -> dict:
        """Close the run: end time, status, open segments closed, cost computed from segments."""
        if status not in FINAL:
            raise ValueError(f"not a final status: {status}")
        end = fields.pop("ended_at", None) or now()
        with self._tx():
            self._db.execute("UPDATE segments SET ended_at = ? WHERE run_id = ? AND ended_at IS NULL", (end, run_id))
        run = self.get(run_id)
        duration = (parse_time(end) - parse_time(run["started_at"])).total_seconds()
        self.update(run_id, status=status, reason=reason, ended_at=end, duration_s=round(duration, 3),
                    cost_usd=round(self.cost_of(run_id), 6), **fields)
        return self.get(run_id)

    def get(self, run_id: str) -> dict:
        row = self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            # allow unique prefixes, like git
            rows = self._db.execute("SELECT * FROM runs WHERE id LIKE ? ORDER BY started_at DESC",
                                    (run_id.replace("%", "") + "%",)).fetchall()
            if len(rows) != 1:
                raise KeyError(run_id)
            row = rows[0]
        return _row(row)

    def runs(self, *, since: str | None = None, recipe: str | None = None, status: Iterable[str] | None = None,
             limit: int | None = None) -> list[dict]:
        q, args = "SELECT * FROM runs WHERE 1=1", []
        if since:
            q += " AND started_at >= ?"
            args.append(since)
        if recipe:
            q += " AND recipe = ?"
            args.append(recipe)
        if status:
            st = list(status)
            q += f" AND status IN ({', '.join('?' for _ in st)})"
            args.extend(st)
        q += " ORDER BY started_at DESC, id DESC"
        if limit:
            q += f" LIMIT {int(limit)}"
        return [_row(r) for r in self._db.execute(q, args).fetchall()]

    # ------------------------------------------------------------------ segments and events

    def open_segment(self, run_id: str, *, cloud=None, region=None, zone=None, instance_type=None,
                     spot: bool = False, nodes: int = 1, hourly_usd_per_node: float = 0.0,
                     started_at: str | None = None) -> int:
        """Start billing a cluster incarnation; closes any segment still open for the run."""
        at = started_at or now()
        with self._tx():
            self._db.execute("UPDATE segments SET ended_at = ? WHERE run_id = ? AND ended_at IS NULL", (at, run_id))
            cur = self._db.execute(
                "INSERT INTO segments (run_id, started_at, cloud, region, zone, instance_type, spot, nodes, "
                "hourly_usd_per_node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, at, cloud, region, zone, instance_type, int(bool(spot)), nodes, hourly_usd_per_node))
            return cur.lastrowid

    def close_segment(self, run_id: str, ended_at: str | None = None) -> None:
        with self._tx():
            self._db.execute("UPDATE segments SET ended_at = ? WHERE run_id = ? AND ended_at IS NULL",
                             (ended_at or now(), run_id))

    def segments(self, run_id: str) -> list[dict]:
        return [dict(r) for r in self._db.execute(
            "SELECT * FROM segments WHERE run_id = ? ORDER BY started_at, id", (run_id,)).fetchall()]

    def cost_of(self, run_id: str, at: str | None = None) -> float:
        """$ billed so far: sum over segments of nodes x $/h x hours (open segments up to `at`/now)."""
        end_default = parse_time(at or now())
        total = 0.0
        for s in self.segments(run_id):
            start = parse_time(s["started_at"])
            end = parse_time(s["ended_at"]) if s["ended_at"] else end_default
            hours = max(0.0, (end - start).total_seconds() / 3600.0)
            total += s["nodes"] * s["hourly_usd_per_node"] * hours
        return total

    def add_event(self, run_id: str, kind: str, *, cloud=None, region=None, zone=None, instance_type=None,
                  detail: Any = None, at: str | None = None) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO events (run_id, at, kind, cloud, region, zone, instance_type, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, at or now(), kind, cloud, region, zone, instance_type,
                 None if detail is None else json.dumps(detail, sort_keys=True)))

    def events(self, run_id: str | None = None, kind: str | None = None) -> list[dict]:
        q, args = "SELECT * FROM events WHERE 1=1", []
        if run_id:
            q += " AND run_id = ?"
            args.append(run_id)
        if kind:
            q += " AND kind = ?"
            args.append(kind)
        out = []
        for r in self._db.execute(q + " ORDER BY at, id", args).fetchall():
            d = dict(r)
            d["detail"] = json.loads(d["detail"]) if d["detail"] else None
            out.append(d)
        return out

    @staticmethod
    def _check(fields: dict) -> None:
        from .redact import redact_url

        for k in _URL_COLUMNS:  # a target URL's user:password never reaches the ledger
            if isinstance(fields.get(k), str):
                fields[k] = redact_url(fields[k])
        bad = [k for k in fields if k not in _RUN_COLUMNS]
        if bad:
            raise ValueError(f"unknown ledger column(s): {', '.join(bad)}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status: {fields['status']}")


def _db_value(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return v


_URL_COLUMNS = ("target", "cluster", "ray_address", "reason")


def _row(r: sqlite3.Row) -> dict:
    from .redact import redact_url

    d = dict(r)
    for k in _URL_COLUMNS:  # rows written by an older rayctl
        if isinstance(d.get(k), str) and "@" in d[k]:
            d[k] = redact_url(d[k])
    if d.get("metrics"):
        try:  # NaN/Infinity from an older rayctl read as null: `runs --json` stays strict JSON
            d["metrics"] = json.loads(d["metrics"], parse_constant=lambda _c: None,
                                      parse_float=lambda t: v if math.isfinite(v := float(t)) else None)
        except ValueError:
            pass
    if d.get("spot") is not None:
        d["spot"] = bool(d["spot"])
    return d
