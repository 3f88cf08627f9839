"""Every cloud cluster / managed job rayctl created, in the ledger's `cloud_clusters` table.

Rows are written *before* SkyPilot is asked to provision, so a crash at any point
still leaves a record that `rayctl down --all` finds. States:

- `launching`: the launch request was sent (the cluster may or may not exist yet);
- `up`: provisioned and running (or serving);
- `down`: torn down (by rayctl, by SkyPilot's managed-jobs controller at job end, or
  autodown);
- `teardown_failed`: rayctl tried and failed: the cluster may still be billing; `detail`
  says what failed and `rayctl down --all` retries.

The table is part of the ledger's schema (`rayctl.ledger.schema`, version 2); this module
only says what a new row starts as and which states are live.
"""

from __future__ import annotations

from ...ledger import Ledger

LIVE = ("launching", "up", "teardown_failed")


def add(ledger: Ledger, name: str, *, run_id: str, mode: str, **cols) -> None:
    ledger.add_cluster(name, run_id=run_id, mode=mode, state="launching", **cols)


def update(ledger: Ledger, name: str, **cols) -> None:
    ledger.update_cluster(name, **cols)


def get(ledger: Ledger, name: str) -> dict | None:
    return ledger.cluster(name)


def for_run(ledger: Ledger, run_id: str) -> dict | None:
    return ledger.cluster_for_run(run_id)


def all_rows(ledger: Ledger, live_only: bool = False) -> list[dict]:
    return ledger.clusters(LIVE if live_only else None)
