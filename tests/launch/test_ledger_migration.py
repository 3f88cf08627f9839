"""Issue 10: the ledger owns its schema and migrations. A ledger written by rayctl at schema 1
(cloud_clusters made on first use, outside the version) is migrated to schema 2 in one step
when rayctl opens it for writing; opened read-only (plan, schedule list) it stays as it is."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

# The schema-1 DDL exactly as rayctl 1 wrote it (ledger.py and cloud_registry.py of that version).
V1_RUN_COLUMNS = ["id TEXT PRIMARY KEY", "recipe TEXT NOT NULL", "recipe_path TEXT", "recipe_sha256 TEXT",
                  "kind TEXT NOT NULL", "target TEXT NOT NULL", "cluster TEXT", "cloud TEXT", "region TEXT",
                  "zone TEXT", "instance_type TEXT", "accelerator TEXT", "accelerator_count INTEGER", "spot INTEGER",
                  "nodes INTEGER NOT NULL DEFAULT 1", "hourly_usd REAL NOT NULL DEFAULT 0",
                  "started_at TEXT NOT NULL", "ended_at TEXT", "status TEXT NOT NULL", "reason TEXT",
                  "cost_usd REAL", "rows INTEGER", "input_tokens INTEGER", "output_tokens INTEGER",
                  "duration_s REAL", "ray_job_id TEXT", "ray_address TEXT", "log_path TEXT", "schedule TEXT",
                  "metrics TEXT"]
V1_DDL = f"""
CREATE TABLE runs ({", ".join(V1_RUN_COLUMNS)});
CREATE INDEX runs_started ON runs(started_at);
CREATE INDEX runs_recipe ON runs(recipe);
CREATE TABLE segments (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs(id),
    started_at TEXT NOT NULL, ended_at TEXT, cloud TEXT, region TEXT, zone TEXT, instance_type TEXT,
    spot INTEGER NOT NULL DEFAULT 0, nodes INTEGER NOT NULL DEFAULT 1, hourly_usd_per_node REAL NOT NULL DEFAULT 0);
CREATE INDEX segments_run ON segments(run_id);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs(id),
    at TEXT NOT NULL, kind TEXT NOT NULL, cloud TEXT, region TEXT, zone TEXT, instance_type TEXT, detail TEXT);
CREATE INDEX events_run ON events(run_id);
CREATE INDEX events_kind ON events(kind);
"""
V1_CLUSTERS = """
CREATE TABLE cloud_clusters (name TEXT PRIMARY KEY, run_id TEXT, mode TEXT NOT NULL, job_id INTEGER,
    cloud TEXT, region TEXT, zone TEXT, instance_type TEXT, spot INTEGER, nodes INTEGER, candidates TEXT,
    state TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, detail TEXT);
CREATE INDEX cloud_clusters_run ON cloud_clusters(run_id);
"""


def _v1_ledger(path, with_clusters: bool):
    con = sqlite3.connect(path)
    con.executescript(V1_DDL + (V1_CLUSTERS if with_clusters else ""))
    con.execute("INSERT INTO runs (id, recipe, kind, target, started_at, status, cloud, spot, hourly_usd, cost_usd, "
                "metrics) VALUES ('old-run-1', 'old', 'train', 'cloud', '2026-01-02T03:04:05.000000Z', "
                "'succeeded', 'aws', 1, 5.0, 2.5, '{\"rows\": 10}')")
    con.execute("INSERT INTO segments (run_id, started_at, ended_at, cloud, spot, hourly_usd_per_node) VALUES "
                "('old-run-1', '2026-01-02T03:04:05.000000Z', '2026-01-02T03:34:05.000000Z', 'aws', 1, 5.0)")
    con.execute("INSERT INTO events (run_id, at, kind, cloud, detail) VALUES "
                "('old-run-1', '2026-01-02T03:20:00.000000Z', 'preemption', 'aws', '{\"why\": \"spot\"}')")
    if with_clusters:
        con.execute("INSERT INTO cloud_clusters (name, run_id, mode, state, created_at, updated_at) VALUES "
                    "('rayctl-old', 'old-run-1', 'managed', 'down', '2026-01-02T03:04:05Z', '2026-01-02T03:34:05Z')")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()


def _user_version(path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


@pytest.mark.parametrize("with_clusters", [False, True], ids=["no-cloud-table", "with-cloud-table"])
def test_a_schema_1_ledger_is_migrated_with_its_rows_intact(tmp_path, with_clusters):
    from rayctl.ledger import SCHEMA_VERSION, Ledger

    db = tmp_path / "ledger.db"
    _v1_ledger(db, with_clusters)
    with Ledger(db) as led:
        run = led.get("old-run-1")
        assert (run["recipe"], run["status"], run["cloud"], run["spot"], run["cost_usd"]) == \
            ("old", "succeeded", "aws", True, 2.5)
        assert run["metrics"] == {"rows": 10} and run["budget"] is None  # the new column, empty for old runs
        assert led.cost_of("old-run-1") == pytest.approx(2.5)
        assert [e["detail"] for e in led.events("old-run-1")] == [{"why": "spot"}]
        assert [c["name"] for c in led.clusters()] == (["rayctl-old"] if with_clusters else [])
        # the new column and table work
        led.update("old-run-1", budget={"max_usd": 3.0, "max_hours": None})
        assert led.get("old-run-1")["budget"] == {"max_usd": 3.0, "max_hours": None}
        led.add_cluster("rayctl-new", run_id="old-run-1", mode="cluster", state="up")
        assert led.cluster_for_run("old-run-1")["name"] in ("rayctl-new", "rayctl-old")
    assert SCHEMA_VERSION == 2 and _user_version(db) == 2
    con = sqlite3.connect(db)
    cols = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    con.close()
    assert "budget" in cols and "cloud_clusters" in tables
    with Ledger(db) as led:  # opening a migrated ledger again changes nothing
        assert len(led.runs()) == 1 and _user_version(db) == 2


def test_a_new_ledger_gets_the_whole_schema(tmp_path):
    from rayctl.ledger import Ledger

    db = tmp_path / "new.db"
    Ledger(db).close()
    con = sqlite3.connect(db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    cols = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    con.close()
    assert {"runs", "segments", "events", "cloud_clusters"} <= tables and "budget" in cols
    assert _user_version(db) == 2


def test_a_failed_migration_leaves_the_schema_1_ledger_as_it_was(tmp_path, monkeypatch):
    from rayctl.ledger import Ledger, LedgerError, schema

    db = tmp_path / "ledger.db"
    _v1_ledger(db, with_clusters=False)
    # the second step fails: the first (ALTER TABLE runs ADD budget) must be rolled back with it
    monkeypatch.setitem(schema.MIGRATIONS, 1, [schema.MIGRATIONS[1][0], "CREATE TABLE broken (x"])
    with pytest.raises(LedgerError):
        Ledger(db)
    con = sqlite3.connect(db)
    cols = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    con.close()
    assert "budget" not in cols and _user_version(db) == 1


def test_reading_a_schema_1_ledger_read_only_does_not_migrate_it(tmp_path):
    from rayctl.ledger import Ledger
    from rayctl.planning import preemption

    db = tmp_path / "ledger.db"
    _v1_ledger(db, with_clusters=False)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with Ledger.open_readonly(db) as led:
        assert [r["id"] for r in led.runs()] == ["old-run-1"]
        assert led.clusters() == []  # no such table yet: nothing recorded
    h = preemption.history(db)
    assert h.events == {("aws", None, None): 1} and h.hours[("aws", None, None)] == pytest.approx(0.5)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and _user_version(db) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.db"]


def test_read_only_open_of_no_ledger_or_an_empty_file_is_none(tmp_path):
    from rayctl.ledger import Ledger

    assert Ledger.open_readonly(tmp_path / "missing.db") is None
    (tmp_path / "empty.db").write_bytes(b"")
    assert Ledger.open_readonly(tmp_path / "empty.db") is None
    assert (tmp_path / "empty.db").read_bytes() == b"" and not (tmp_path / "missing.db").exists()
