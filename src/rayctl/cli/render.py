"""Shared output helpers: rich on a terminal, plain text otherwise, JSON on request."""

from __future__ import annotations

import json
import math
import sys

CATALOG_HELP = ("Price data folder in SkyPilot's layout (<cloud>/vms.csv). Default: $RAYCTL_CATALOG, "
                "then the newer of `rayctl pricing refresh`'s catalog and ~/.sky/catalogs/v8, "
                "then the snapshot shipped with rayctl.")


def strict_json(doc, **kw) -> str:
    """JSON text of `doc`, strictly: NaN and infinities raise instead of becoming the
    non-JSON tokens `NaN`/`Infinity` (inputs are checked for them, so one here is a bug)."""
    return json.dumps(doc, allow_nan=False, **kw)


def dump_json(doc) -> None:
    """Exactly one strict JSON document on stdout; stable key order, so equal inputs give
    equal bytes. Every `--json` output goes through here."""
    text = strict_json(doc, indent=2, ensure_ascii=False)  # built fully before anything is written
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def number_flag(flag: str, value: float | None, *, low: float = 0.0, high: float, low_inclusive: bool = False,
                what: str = "") -> float | None:
    """`value` of a numeric flag, or InputError (exit 2) naming the flag: NaN, infinities
    and values outside (low, high] (or [low, high]) are refused."""
    if value is None:
        return None
    ok = math.isfinite(value) and (low <= value if low_inclusive else low < value) and value <= high
    if not ok:
        from ..errors import InputError

        bound = f"{'at least' if low_inclusive else 'more than'} {low:g} and at most {high:,.0f}"
        raise InputError(f"{flag} must be a finite number{' of ' + what if what else ''}, {bound}; got {value:g}")
    return value


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
