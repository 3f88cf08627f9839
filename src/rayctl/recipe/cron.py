"""Cron expressions: strict checking against what cron itself accepts, and next run times.

`check(expr)` accepts the five-field syntax of Vixie/Debian cron and cronie, so an
expression rayctl accepts is one the `crontab` command accepts too:

- fields `minute hour day-of-month month day-of-week`, separated by blanks;
- each field a comma list of `*`, `N`, `N-M`, `*/S` or `N-M/S`; names `jan`..`dec`
  and `sun`..`sat` in the month and day-of-week fields; day-of-week 0 and 7 are Sunday;
- the nicknames `@yearly @annually @monthly @weekly @daily @midnight @hourly`.

croniter extensions that cron does not run (`L`, `W`, `#`, `H`, `?`, a sixth seconds
or year field) and `@reboot` (not a time: it has no next run) are refused, each with a
message naming the field. So is an expression that matches no date at all (`0 0 31 2 *`).
Next run times come from croniter, in the machine's local time zone — cron's clock.
"""

from __future__ import annotations

import datetime as dt
import re

FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day-of-week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
SYNTAX = "five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *' (02:00 every day)"

_EXTENSIONS = " (L, W, #, H and ? are extensions of other schedulers; cron does not understand them)"
_ITEM = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$", re.I)


class CronError(ValueError):
    """A cron expression cron would not run; the message says which field and why."""


def check(expr: str, fires: bool = True) -> str:
    """The expression with blanks normalised, or `CronError` saying what is wrong.

    `fires=False` checks the syntax alone, without croniter (recipe validation stays
    light); schedule add/sync also check that the expression matches some date."""
    if not isinstance(expr, str):
        raise CronError(f"expected a string, got {type(expr).__name__}")
    if any(ord(c) < 32 and c not in " \t" for c in expr) or "\x7f" in expr:
        raise CronError("holds a line break or control character; a cron expression is one line")
    text = " ".join(expr.split())
    if not text:
        raise CronError(f"is empty; expected {SYNTAX}")
    if text.startswith("@"):
        low = text.lower()
        if low == "@reboot":
            raise CronError("@reboot is not a time of day (it has no next run); rayctl schedules need a time")
        if low in NICKNAMES:
            return low
        raise CronError(f"'{text}' is not a cron nickname; use one of {', '.join(NICKNAMES)} or {SYNTAX}")
    parts = text.split(" ")
    if len(parts) != 5:
        extra = " (cron has no seconds or year field)" if len(parts) in (6, 7) else ""
        raise CronError(f"has {len(parts)} field(s), expected {SYNTAX}{extra}")
    for raw, (name, lo, hi, names) in zip(parts, FIELDS):
        _check_field(raw, name, lo, hi, names)
    if fires:
        next_runs(text, 1)  # refuses expressions that match no date
    return text


def _value(tok: str, name: str, lo: int, hi: int, names, ext: str = "") -> int:
    if tok.isdigit():
        v = int(tok)
        if not lo <= v <= hi:
            raise CronError(f"{name} field: {v} is out of range {lo}-{hi}")
        return v
    if names and tok.lower() in names:
        return names.index(tok.lower()) + (1 if name == "month" else 0)
    if names:
        raise CronError(f"{name} field: '{tok}' is not a number {lo}-{hi} or a name ({', '.join(names)}){ext}")
    raise CronError(f"{name} field: '{tok}' is not a number {lo}-{hi}{ext}")


def _check_field(raw: str, name: str, lo: int, hi: int, names) -> None:
    for shown in raw.split(","):
        if shown == "":
            raise CronError(f"{name} field: '{raw}' has an empty list item")
        m = _ITEM.match(shown)
        if not m:
            bad = next((c for c in shown if not (c.isalnum() or c in "*-/")), None)
            why = f"'{bad}' is not cron syntax" if bad else "expected *, N, N-M, */S or N-M/S"
            if bad in ("?", "#"):
                why += _EXTENSIONS
            raise CronError(f"{name} field: '{shown}': {why}")
        star, a, b, step = m.groups()
        if step is not None:
            if int(step) == 0:
                raise CronError(f"{name} field: '{shown}': a step of 0 never advances")
            if not star and b is None:
                raise CronError(f"{name} field: '{shown}': cron steps apply to * or a range; "
                                f"write {a}-{hi}/{step}")
        if star:
            continue
        ext = _EXTENSIONS if re.fullmatch(r"[0-9]*[lwh][0-9]*", a, re.I) else ""
        first = _value(a, name, lo, hi, names, ext)
        if b is not None:
            last = _value(b, name, lo, hi, names, ext)
            if last < first:
                raise CronError(f"{name} field: range '{shown}' runs backwards ({first} > {last})")


def next_runs(expr: str, count: int = 1, after: dt.datetime | None = None) -> list[dt.datetime]:
    """The next `count` times `expr` fires after `after` (default now), in local time."""
    try:
        from croniter import CroniterBadCronError, CroniterBadDateError, croniter
    except ImportError:
        from ..errors import RayctlError

        raise RayctlError("schedules need the croniter package: pip install 'rayctl[cron]'") from None

    start = (after or dt.datetime.now()).astimezone()
    try:
        it = croniter(expr, start)
        return [it.get_next(dt.datetime) for _ in range(count)]
    except CroniterBadDateError:
        raise CronError("never fires: no calendar date matches it (e.g. day 31 of a 30-day month)") from None
    except (CroniterBadCronError, ValueError, KeyError) as e:  # pragma: no cover - check() catches these first
        raise CronError(f"is not valid: {e}") from None
