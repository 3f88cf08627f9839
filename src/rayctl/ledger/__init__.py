"""The run ledger: one SQLite database (WAL mode) under `$RAYCTL_HOME/ledger.db`.

Tables:
- `runs`: one row per launch — recipe (name, path, sha256), kind, target, where it ran
  (cloud/region/zone/instance/spot, $/h for the cluster; 0 locally), start/end, status
  and why, rows and tokens from the workload's metrics, the Ray job id and address,
  the log file, the cost, and for a cloud run the budget it started with.
- `segments`: billed intervals of a run's cluster, one per incarnation (a spot
  recovery opens a new segment on the new offer). Cost = sum of $/h x hours.
- `events`: what happened to a run (provisioned, recovered, preempted, teardown
  failed, budget stop, ...), with where it happened.
- `cloud_clusters`: every cloud cluster / managed job rayctl asked SkyPilot for
  (`rayctl.providers.skypilot.registry` says what its states mean).

The ledger owns its database: every SQL statement is in this package (`store.py`: reads
and writes; `schema.py`: tables, versions, migrations). Other modules use `Ledger`, or
`Ledger.open_readonly()` to read without creating or migrating anything (`plan`, the
schedule list, measured throughputs).

Writers use short transactions with a busy timeout, so concurrent cron runs and a
live launch never corrupt or lose rows. Opening a ledger of an older schema migrates it
(all steps in one transaction).

A ledger rayctl cannot use -- not an SQLite file (damaged, or something else at that
path), read-only, of another schema, or written by a newer rayctl -- is a `LedgerError`
(exit 2) naming the file, what is wrong and what to do. rayctl never re-creates,
migrates or writes over such a file: the runs recorded in it stay as they are. A write
probe at open time makes a read-only ledger fail before a launch starts anything.
"""

from __future__ import annotations

from .schema import SCHEMA_VERSION, LedgerError, ledger_error
from .store import FINAL, STATUSES, Ledger, new_run_id, now, parse_time

__all__ = ["FINAL", "SCHEMA_VERSION", "STATUSES", "Ledger", "LedgerError", "ledger_error", "new_run_id", "now",
           "parse_time"]
