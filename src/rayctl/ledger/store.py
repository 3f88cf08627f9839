"""`Ledger`: reads and writes of the run ledger (runs, segments, events, cloud clusters).

Every SQL statement rayctl runs against the ledger is here or in `schema.py`.
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

from ..settings import rayctl_home
from . import schema
from .schema import CLUSTER_COLUMNS, RUN_COLUMNS, SCHEMA_VERSION, LedgerError, ledger_error

# queued: waiting for CPUs/GPUs that other rayctl runs on the cluster hold (`launch --wait`);
# lost: the run's cluster went away while nobody followed it (found by `rayctl runs`/`status`).
STATUSES = ("pending", "provisioning", "queued", "running", "serving", "succeeded", "failed", "interrupted",
            "stopped", "lost")
FINAL = ("succeeded", "failed", "interrupted", "stopped", "lost")


def now() -> str:
    """UTC timestamp, ISO 8601 with seconds precision and a Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def new_run_id(recipe: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{recipe[:40]}-{stamp}-{secrets.token_hex(2)}"


class Ledger:
    readonly = False

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
        self._connect(lambda: sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False),
                      self._open)

    @classmethod
    def open_readonly(cls, path: str | os.PathLike | None = None) -> "Ledger | None":
        """The ledger at `path` (default: $RAYCTL_HOME/ledger.db) for reading only, or None when there is
        none (no file, or an empty one). Never creates, migrates or writes anything: a ledger of an older
        schema is read as it is. LedgerError when the file is not a ledger rayctl can read."""
        self = cls.__new__(cls)
        self.path = Path(path) if path else rayctl_home() / "ledger.db"
        self.readonly, self._db, self._present = True, None, set()
        if not self.path.is_file():
            return None
        uri = self.path.resolve().as_uri() + "?mode=ro"
        self._connect(lambda: sqlite3.connect(uri, uri=True, timeout=10, check_same_thread=False), self._check)
        if not self._present:  # an empty database: nothing recorded yet
            self.close()
            return None
        return self

    def _connect(self, connect, then) -> None:
        try:
            self._db = connect()
            self._db.row_factory = sqlite3.Row
            then()
        except sqlite3.Error as e:
            self.close()
            raise ledger_error(self.path, e) from None
        except LedgerError:
            self.close()
            raise

    def _check(self) -> None:
        _version, self._present = schema.check(self._db, self.path)

    def _open(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout=30000")
        self._check()  # before any write, so that a foreign file stays byte-for-byte as it was
        db.execute("PRAGMA journal_mode=WAL")  # a write: a read-only file or folder fails here
        db.execute("BEGIN IMMEDIATE")  # write probe: fail now, not half-way through a launch
        migrated = False
        try:  # a migration is all or nothing: the steps and the new version commit together
            migrated = schema.upgrade(db, self.path)
            if not migrated:
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # the probe (rolled back)
        finally:
            db.execute("COMMIT" if migrated else "ROLLBACK")
        self._present = {"runs", "segments", "events", "cloud_clusters"}
        db.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ SQL: the one place statements are built

    def _tx(self):
        if self.readonly:
            raise ValueError(f"ledger {self.path} was opened read-only")
        db = self._db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, et, ev, tb):
                db.execute("ROLLBACK" if et else "COMMIT")
                return False

        return _Tx()

    def _select(self, table: str, where: dict | None = None, *, order: str, limit: int | None = None,
                columns: str = "*") -> list[sqlite3.Row]:
        """Rows of `table` matching `where` ({"col": value, "col >=": value, "col LIKE": pattern,
        "col": [values]: IN}); a None or empty value is no condition."""
        if table not in self._present:  # a table an older ledger opened read-only does not have yet
            return []
        clauses, args = [], []
        for key, v in (where or {}).items():
            if v is None or (isinstance(v, (str, list, tuple)) and not v):
                continue
            col, _, op = key.partition(" ")
            if isinstance(v, (list, tuple)):
                clauses.append(f'"{col}" IN ({", ".join("?" for _ in v)})')
                args.extend(v)
            else:
                clauses.append(f'"{col}" {op or "="} ?')
                args.append(_db_value(v))
        q = f"SELECT {columns} FROM {table}" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        q += f" ORDER BY {order}" + (f" LIMIT {int(limit)}" if limit else "")
        try:
            return self._db.execute(q, args).fetchall()
        except sqlite3.Error as e:
            raise ledger_error(self.path, e) from None

    def _insert(self, table: str, row: dict, *, replace: bool = False, before: tuple | None = None) -> int:
        """Insert `row` (the id it got); `before`: a (statement, args) run first, in the same transaction."""
        cols = ", ".join(f'"{k}"' for k in row)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._tx():
            if before:
                self._db.execute(*before)
            return self._db.execute(f"{verb} INTO {table} ({cols}) VALUES ({', '.join('?' for _ in row)})",
                                    [_db_value(v) for v in row.values()]).lastrowid

    def _update(self, table: str, key: str, value: Any, fields: dict) -> int:
        sets = ", ".join(f'"{k}" = ?' for k in fields)
        with self._tx():
            return self._db.execute(f'UPDATE {table} SET {sets} WHERE "{key}" = ?',
                                    [_db_value(v) for v in fields.values()] + [value]).rowcount

    # ------------------------------------------------------------------ runs

    def start_run(self, *, recipe: str, kind: str, target: str, run_id: str | None = None,
                  status: str = "pending", **fields: Any) -> str:
        rid = run_id or new_run_id(recipe)
        row = {"id": rid, "recipe": recipe, "kind": kind, "target": target, "status": status,
               "started_at": fields.pop("started_at", None) or now(), **fields}
        self._check_run(row)
        self._insert("runs", row)
        return rid

    def update(self, run_id: str, **fields: Any) -> None:
        if not fields:
            return
        self._check_run(fields)
        if self._update("runs", "id", run_id, fields) == 0:
            raise KeyError(run_id)

    def finish(self, run_id: str, status: str, reason: str | None = None, **fields: Any) -> dict:
        """Close the run: end time, status, open segments closed, cost computed from segments."""
        if status not in FINAL:
            raise ValueError(f"not a final status: {status}")
        end = fields.pop("ended_at", None) or now()
        self.close_segment(run_id, ended_at=end)
        run = self.get(run_id)
        duration = (parse_time(end) - parse_time(run["started_at"])).total_seconds()
        self.update(run_id, status=status, reason=reason, ended_at=end, duration_s=round(duration, 3),
                    cost_usd=round(self.cost_of(run_id), 6), **fields)
        return self.get(run_id)

    def get(self, run_id: str) -> dict:
        rows = self._select("runs", {"id": run_id}, order="id")
        if not rows:  # allow unique prefixes, like git
            rows = self._select("runs", {"id LIKE": run_id.replace("%", "") + "%"}, order="started_at DESC")
            if len(rows) != 1:
                raise KeyError(run_id)
        return _row(rows[0])

    def runs(self, *, since: str | None = None, recipe: str | None = None, status: Iterable[str] | None = None,
             schedule: str | None = None, limit: int | None = None) -> list[dict]:
        where = {"started_at >=": since, "recipe": recipe, "schedule": schedule,
                 "status": list(status) if status else None}
        return [_row(r) for r in self._select("runs", where, order="started_at DESC, id DESC", limit=limit)]

    # ------------------------------------------------------------------ segments and events

    def open_segment(self, run_id: str, *, cloud=None, region=None, zone=None, instance_type=None,
                     spot: bool = False, nodes: int = 1, hourly_usd_per_node: float = 0.0,
                     started_at: str | None = None) -> int:
        """Start billing a cluster incarnation; closes any segment still open for the run."""
        at = started_at or now()
        return self._insert("segments", {"run_id": run_id, "started_at": at, "cloud": cloud, "region": region,
                                         "zone": zone, "instance_type": instance_type, "spot": int(bool(spot)),
                                         "nodes": nodes, "hourly_usd_per_node": hourly_usd_per_node},
                            before=(_CLOSE_SEGMENTS, (at, run_id)))

    def close_segment(self, run_id: str, ended_at: str | None = None) -> None:
        with self._tx():
            self._db.execute(_CLOSE_SEGMENTS, (ended_at or now(), run_id))

    def segments(self, run_id: str | None = None, *, spot: bool | None = None) -> list[dict]:
        where = {"run_id": run_id, "spot": None if spot is None else int(spot)}
        return [dict(r) for r in self._select("segments", where, order="started_at, id")]

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
        self._insert("events", {"run_id": run_id, "at": at or now(), "kind": kind, "cloud": cloud,
                                "region": region, "zone": zone, "instance_type": instance_type,
                                "detail": None if detail is None else json.dumps(detail, sort_keys=True)})

    def events(self, run_id: str | None = None, kind: str | None = None) -> list[dict]:
        out = []
        for r in self._select("events", {"run_id": run_id, "kind": kind}, order="at, id"):
            d = dict(r)
            d["detail"] = _json(d["detail"]) if d["detail"] else None
            out.append(d)
        return out

    # ------------------------------------------------------------------ cloud clusters

    def add_cluster(self, name: str, **cols: Any) -> None:
        """Record a cloud cluster / managed job (replacing any row of that name)."""
        at = now()
        row = {"name": name, "created_at": at, "updated_at": at, **cols}
        _check_columns(row, CLUSTER_COLUMNS)
        self._insert("cloud_clusters", row, replace=True)

    def update_cluster(self, name: str, **cols: Any) -> None:
        cols["updated_at"] = now()
        _check_columns(cols, CLUSTER_COLUMNS)
        self._update("cloud_clusters", "name", name, cols)

    def cluster(self, name: str) -> dict | None:
        rows = self._select("cloud_clusters", {"name": name}, order="name")
        return dict(rows[0]) if rows else None

    def cluster_for_run(self, run_id: str) -> dict | None:
        """The latest cluster recorded for a run."""
        rows = self._select("cloud_clusters", {"run_id": run_id}, order="created_at DESC", limit=1)
        return dict(rows[0]) if rows else None

    def clusters(self, states: Iterable[str] | None = None) -> list[dict]:
        """Every recorded cluster, oldest first (only those in `states` when given)."""
        where = {"state": list(states) if states is not None else None}
        return [dict(r) for r in self._select("cloud_clusters", where, order="created_at")]

    @staticmethod
    def _check_run(fields: dict) -> None:
        from ..redact import redact_url

        for k in _URL_COLUMNS:  # a target URL's user:password never reaches the ledger
            if isinstance(fields.get(k), str):
                fields[k] = redact_url(fields[k])
        _check_columns(fields, RUN_COLUMNS)
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status: {fields['status']}")


def _check_columns(fields: dict, columns: dict) -> None:
    bad = [k for k in fields if k not in columns]
    if bad:
        raise ValueError(f"unknown ledger column(s): {', '.join(bad)}")


def _db_value(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return v


_CLOSE_SEGMENTS = "UPDATE segments SET ended_at = ? WHERE run_id = ? AND ended_at IS NULL"
_URL_COLUMNS = ("target", "cluster", "ray_address", "reason")


def _json(text: str):
    """Parsed JSON; NaN/Infinity (from an older rayctl) read as null so that `--json` output stays strict;
    text that is not JSON is returned as it is."""
    try:
        return json.loads(text, parse_constant=lambda _c: None,
                          parse_float=lambda t: v if math.isfinite(v := float(t)) else None)
    except ValueError:
        return text


def _row(r: sqlite3.Row) -> dict:
    from ..redact import redact_url

    d = dict(r)
    for k in _URL_COLUMNS:  # rows written by an older rayctl
        if isinstance(d.get(k), str) and "@" in d[k]:
            d[k] = redact_url(d[k])
    for k in ("metrics", "budget"):
        if d.get(k):
            d[k] = _json(d[k])
    if d.get("spot") is not None:
        d["spot"] = bool(d["spot"])
    return d
