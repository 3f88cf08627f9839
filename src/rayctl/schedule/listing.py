"""`rayctl schedule list`: every schedule with its state in its crontab, its next run
times and its last run from the ledger."""

from __future__ import annotations

import os

from ..recipe import cron as cron_expr
from . import crontab
from .registry import Schedule, load_registry
from ..settings import rayctl_home
from ..errors import RayctlError
from ..redact import redact, secret_values


def listing(*, crontab_file=None, count: int = 1) -> list[dict]:
    """Every schedule with its state in its crontab, next run times and last run from the ledger."""
    reg = load_registry()
    targets: dict = {}
    for s in reg.values():
        targets.setdefault(s.crontab, s.target)
    if crontab_file is not None:
        t = crontab.Target(crontab_file)
        targets.setdefault(t.key, t)
    contents: dict = {}
    for key, t in targets.items():
        try:
            contents[key] = t.read()
        except RayctlError as e:
            contents[key] = e
    last = _last_runs(list(reg))
    rows = []
    for s in reg.values():
        content = contents.get(s.crontab)
        if isinstance(content, RayctlError):
            state = f"unknown ({content.message})"
        else:
            lines = crontab.tagged(content).get(s.name, [])
            state = "installed" if s.line.encode() in lines else ("modified" if lines else "missing")
        row = _row(s, state, count)
        row["last_run"] = last.get(s.name)
        rows.append(row)
    for key, content in contents.items():
        if isinstance(content, RayctlError):
            continue
        for name, lines in crontab.tagged(content).items():
            if name not in reg:
                rows.append({"name": name, "state": "unregistered", "crontab": key, "line": redact(lines[0].decode(
                    errors="replace")), "cron": None, "recipe": None, "next_runs": [], "last_run": None})
    return rows


def _row(s: Schedule, state: str, count: int) -> dict:
    try:
        nxt = [t.isoformat() for t in cron_expr.next_runs(s.cron, count)]
    except cron_expr.CronError:
        nxt = []
    return {"name": s.name, "state": state, "cron": s.cron, "recipe": s.recipe, "recipe_name": s.recipe_name,
            "kind": s.kind, "crontab": s.crontab, "source": s.source, "next_runs": nxt,
            "log": os.path.join(s.env.get("RAYCTL_HOME", str(rayctl_home())), "logs", f"schedule-{s.name}.log"),
            "line": _masked(s.line, s.env)}


def _masked(line: str | None, env: dict) -> str | None:
    """A crontab line with the values of credential-like variables masked (schedules made
    before `--env` refused them may still hold some)."""
    if not line:
        return line
    return redact(line, secret_values(env))


def _last_runs(names: list[str]) -> dict:
    """{schedule: its latest run} from the ledger, read-only; none when there is no ledger or it cannot be read."""
    from ..ledger import Ledger, LedgerError

    out: dict = {}
    if not names:
        return out
    try:
        led = Ledger.open_readonly()
        if led is None:
            return out
        with led:
            for name in names:
                for r in led.runs(schedule=name, limit=1):
                    out[name] = {k: r[k] for k in ("id", "status", "started_at", "ended_at", "cost_usd")}
    except LedgerError:
        return {}
    return out


