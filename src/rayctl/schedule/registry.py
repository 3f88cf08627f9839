"""The schedule registry: `$RAYCTL_HOME/schedules.json` (name -> recipe, cron expression,
where the line is installed, how it got there).

Every change holds the lock `$RAYCTL_HOME/locks/schedules.lock` (`registry_lock`), so
concurrent `add`/`remove`/`sync` never lose an update; the file is replaced atomically.
A file rayctl cannot read, or of the wrong shape, is an InputError and is never rewritten.

The crontab line of a schedule is built in `crontab_line.py`; `add`/`remove`/`sync` are
in `install.py`; `rayctl schedule list` rows in `listing.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import crontab
from ..settings import rayctl_home
from ..errors import InputError

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
REGISTRY_VERSION = 1


@dataclass
class Schedule:
    name: str
    recipe: str  # absolute path of the recipe file
    recipe_name: str
    kind: str
    cron: str
    crontab: str | None = None  # None: the user's crontab; else a crontab-format file
    cron_user: str | None = None  # user column, for /etc/cron.d-style files
    env: dict = field(default_factory=dict)  # the environment the line sets
    source: str = "add"  # "add" (by hand) or "sync" (from a recipe's schedule: field)
    line: str = ""
    added_at: str = ""

    @property
    def target(self) -> crontab.Target:
        return crontab.Target(self.crontab)


# ---------------------------------------------------------------- paths, lock, registry

def registry_path() -> Path:
    return rayctl_home() / "schedules.json"


def logs_dir() -> Path:
    return rayctl_home() / "logs"


def locks_dir() -> Path:
    return rayctl_home() / "locks"


def log_path(name: str) -> Path:
    return logs_dir() / f"schedule-{name}.log"


def lock_path(name: str) -> Path:
    return locks_dir() / f"schedule-{name}.lock"


@contextlib.contextmanager
def registry_lock():
    import fcntl

    locks_dir().mkdir(parents=True, exist_ok=True)
    with open(locks_dir() / "schedules.lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def load_registry() -> dict[str, Schedule]:
    """The schedules in `schedules.json` ({} when there is none). A file rayctl cannot read,
    or of the wrong shape, is an InputError naming it and what is wrong; it is never
    rewritten while damaged (every change reads it first and stops here)."""
    p = registry_path()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise InputError(f"{p}: cannot read the schedule registry ({e.strerror}); make it a readable file, "
                         "or move it away — `crontab -l` still shows every installed line "
                         "(tagged rayctl:schedule=NAME)") from None
    try:
        doc = json.loads(raw)
    except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
        line = f":{e.lineno}" if isinstance(e, json.JSONDecodeError) else ""
        raise _damaged(p, str(e), line) from None
    if not isinstance(doc, dict):
        raise _damaged(p, f"the file holds {_json_kind(doc)}, expected an object with \"schedules\"")
    version = doc.get("version", REGISTRY_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > REGISTRY_VERSION:
        raise InputError(f"{p}: the schedule registry was written by a newer rayctl (version {version}; this "
                         f"rayctl reads up to {REGISTRY_VERSION}); upgrade rayctl. The file is left as it is")
    items = doc.get("schedules")
    if not isinstance(items, dict):
        got = "is missing" if "schedules" not in doc else f"is {_json_kind(items)}"
        raise _damaged(p, f"\"schedules\" {got}, expected an object of schedules by name")
    out: dict[str, Schedule] = {}
    for name, entry in sorted(items.items()):
        problem = _entry_problem(entry)
        if problem:
            raise _damaged(p, f"schedule '{name[:60]}': {problem}")
        try:
            out[name] = Schedule(**entry)
        except TypeError as e:
            raise _damaged(p, f"schedule '{name[:60]}': {e}") from None
    return out


_REQUIRED_STR = ("name", "recipe", "recipe_name", "kind", "cron")
_OPTIONAL_STR = ("crontab", "cron_user", "source", "line", "added_at")


def _entry_problem(entry) -> str | None:
    if not isinstance(entry, dict):
        return f"is {_json_kind(entry)}, expected an object"
    for k in _REQUIRED_STR:
        if not isinstance(entry.get(k), str):
            return f"field '{k}' is {'missing' if k not in entry else _json_kind(entry[k])}, expected a string"
    for k in _OPTIONAL_STR:
        if entry.get(k) is not None and not isinstance(entry[k], str):
            return f"field '{k}' is {_json_kind(entry[k])}, expected a string"
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        return "field 'env' must be an object of strings"
    return None


def _json_kind(v) -> str:
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    if isinstance(v, (int, float)):
        return f"a number ({v!r:.20})"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if v is None:
        return "null"
    return "an object"


def _damaged(p: Path, what: str, line: str = "") -> InputError:
    return InputError(f"{p}{line}: the schedule registry is damaged ({what}); rayctl leaves it as it is. Fix it, or "
                      f"move it away (mv {p} {p}.damaged) — `crontab -l` still shows every installed line "
                      "(tagged rayctl:schedule=NAME)")


def save_registry(reg: dict[str, Schedule]) -> None:
    p = registry_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": REGISTRY_VERSION, "schedules": {n: asdict(s) for n, s in sorted(reg.items())}}
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, p)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InputError(f"{p}: cannot write the schedule registry ({e.strerror}); make {p.parent} writable "
                         "or set RAYCTL_HOME to a writable folder") from None


def check_name(name: str, flag: str = "--name") -> str:
    if not NAME_RE.match(name or ""):
        raise InputError(f"{flag} '{name}': a schedule name is lower-case letters, digits and '-', "
                         "at most 63 characters, starting and ending with a letter or digit")
    return name
