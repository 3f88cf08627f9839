"""Shared output helpers: rich on a terminal, plain text otherwise, JSON on request."""

from __future__ import annotations

import json
import sys

CATALOG_HELP = ("Price data folder in SkyPilot's layout (<cloud>/vms.csv). Default: $RAYCTL_CATALOG, "
                "then the newer of `rayctl pricing refresh`'s catalog and ~/.sky/catalogs/v8, "
                "then the snapshot shipped with rayctl.")


def dump_json(doc) -> None:
    """Exactly one JSON document on stdout; stable key order, so equal inputs give equal bytes."""
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal (cron, CI, pipes) print plain, wide lines rather than wrapping at 80 columns.
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def warn(msg: str) -> None:
    sys.stderr.write(f"rayctl: warning: {msg}\n")


def money(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    return f"${x:,.{digits}f}"
