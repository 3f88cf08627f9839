"""Schedules: recipes that cron launches, kept in a registry and a crontab line each.

- The registry is `$RAYCTL_HOME/schedules.json` (name -> recipe, cron expression,
  where the line is installed, how it got there). Every change holds the lock
  `$RAYCTL_HOME/locks/schedules.lock`, so concurrent `add`/`remove`/`sync` never lose
  an update; the file is replaced atomically.
- Each schedule is one tagged crontab line (see `rayctl.schedule.crontab`) that runs
  `python -m rayctl schedule run NAME --recipe /abs/recipe.yaml` with absolute paths,
  its own environment (RAYCTL_HOME, PATH, and PYTHONPATH/RAYCTL_CATALOG when set at
  install time, plus any `--env KEY=VALUE`) and its output appended to the schedule's
  log `$RAYCTL_HOME/logs/schedule-NAME.log`.
- A recipe's own `schedule:` field is checked here (cron syntax, with the file, line
  and column of the field), when adding and syncing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..recipe import cron as cron_expr
from . import crontab
from ..settings import rayctl_home
from ..errors import InputError, Problem, RayctlError, RecipeError

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables a schedule's line always sets itself; --env may not override them.
_OWN_ENV = ("RAYCTL_HOME", "PATH")
# Variables copied from the installing shell when set, so cron sees what the user saw.
_CARRIED_ENV = ("PYTHONPATH", "RAYCTL_CATALOG")
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
def _registry_lock():
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


def _save_registry(reg: dict[str, Schedule]) -> None:
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


# ---------------------------------------------------------------- checks

def check_name(name: str, flag: str = "--name") -> str:
    if not NAME_RE.match(name or ""):
        raise InputError(f"{flag} '{name}': a schedule name is lower-case letters, digits and '-', "
                         "at most 63 characters, starting and ending with a letter or digit")
    return name


def check_cron_flag(expr: str, flag: str = "--cron") -> str:
    try:
        return cron_expr.check(expr)
    except cron_expr.CronError as e:
        raise InputError(f"{flag} '{expr}': {e}") from None


def recipe_schedule(path: str | os.PathLike):
    """Load a recipe and check its `schedule:` field; (Recipe, normalised cron or None).

    Raises RecipeError naming file:line:column and field 'schedule' for a bad cron string.
    """
    from .. import recipe as recipe_mod
    from ..recipe import yamlsafe

    r = recipe_mod.load(path)
    if r.schedule is None:
        return r, None
    try:
        return r, cron_expr.check(r.schedule)
    except cron_expr.CronError as e:
        with open(r.path, "rb") as f:
            doc = yamlsafe.load(f.read())
        line, col = doc.where(("schedule",))
        raise RecipeError(r.path, [Problem(f"'{r.schedule}' is not a cron expression cron can run: {e}",
                                           field="schedule", line=line, column=col)]) from None


def _parse_env(pairs) -> dict:
    env: dict = {}
    for p in pairs or ():
        key, sep, val = p.partition("=")
        if not sep or not _ENV_KEY.match(key):
            raise InputError(f"--env '{p}': expected KEY=VALUE with KEY a shell variable name")
        if key in _OWN_ENV:
            raise InputError(f"--env '{p}': {key} is set by rayctl for every scheduled run")
        if any(ord(c) < 32 for c in val):
            raise InputError(f"--env '{p}': the value holds a line break or control character")
        env[key] = val
    return env


# ---------------------------------------------------------------- the crontab line

def line_env(extra: dict | None = None) -> dict:
    """The environment a scheduled run gets: fixed, absolute, independent of cron's."""
    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    path = [exe_dir] + [d for d in ("/usr/local/bin", "/usr/bin", "/bin") if d != exe_dir]
    env = {"RAYCTL_HOME": str(rayctl_home().resolve()), "PATH": ":".join(path)}
    for key in _CARRIED_ENV:
        val = os.environ.get(key)
        if val:
            if key == "PYTHONPATH":
                val = ":".join(os.path.abspath(p) for p in val.split(":") if p)
            elif key == "RAYCTL_CATALOG":
                val = os.path.abspath(os.path.expanduser(val))
            env[key] = val
    env.update(extra or {})
    return env


def build_line(s: Schedule) -> str:
    """The crontab line for `s`: cron fields, [user], command, tag."""
    envbin = "/usr/bin/env" if os.path.exists("/usr/bin/env") else "env"
    argv = [envbin, *(f"{k}={v}" for k, v in s.env.items()),
            os.path.abspath(sys.executable), "-m", "rayctl", "schedule", "run", s.name, "--recipe", s.recipe]
    log = os.path.join(s.env["RAYCTL_HOME"], "logs", f"schedule-{s.name}.log")
    command = f"{shlex.join(argv)} >>{shlex.quote(log)} 2>&1"
    command = command.replace("%", "\\%")  # cron turns a bare % into a newline
    command += f" {crontab.tag(s.name)}"
    if len(command.encode()) > crontab.MAX_COMMAND:
        raise InputError(f"the crontab command for schedule '{s.name}' would be {len(command.encode())} bytes; "
                         f"cron refuses commands of {crontab.MAX_COMMAND + 1} bytes or more. Shorten the paths "
                         "(recipe, RAYCTL_HOME, PYTHONPATH) or the --env values")
    user = f" {s.cron_user}" if s.cron_user else ""
    return f"{s.cron}{user} {command}"


# ---------------------------------------------------------------- operations

def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _make(recipe_path, *, cron: str | None, name: str | None, crontab_file, cron_user, env, source,
          cron_flag: str = "--cron") -> Schedule:
    r, own = recipe_schedule(recipe_path)
    if cron is not None:
        expr = check_cron_flag(cron, cron_flag)
    elif own is not None:
        expr = own
    else:
        raise InputError(f"{r.path}: no schedule: pass --cron \"0 2 * * *\" or set `schedule:` in the recipe")
    name = check_name(name) if name is not None else r.name
    if cron_user is not None and not re.match(r"^[a-z_][a-z0-9_.-]*\$?$", cron_user, re.I):
        raise InputError(f"--cron-user '{cron_user}': not a user name")
    s = Schedule(name=name, recipe=os.path.abspath(r.path), recipe_name=r.name, kind=r.kind, cron=expr,
                 crontab=crontab.Target(crontab_file).key, cron_user=cron_user,
                 env=line_env(_parse_env(env)), source=source, added_at=_now())
    s.line = build_line(s)
    return s


def add(recipe_path, *, cron: str | None = None, name: str | None = None, crontab_file=None,
        cron_user: str | None = None, env=(), replace: bool = False) -> tuple[Schedule, str]:
    """Validate and install one schedule; (schedule, 'added' | 'replaced' | 'unchanged')."""
    s = _make(recipe_path, cron=cron, name=name, crontab_file=crontab_file, cron_user=cron_user, env=env,
              source="add")
    with _registry_lock():
        reg = load_registry()
        old = reg.get(s.name)
        target = s.target
        content = target.read()
        if old is not None:
            if old.recipe == s.recipe and old.cron == s.cron and old.line == s.line \
                    and old.crontab == s.crontab and s.line.encode() in content.splitlines():
                return old, "unchanged"
            if not replace:
                raise InputError(f"a schedule named '{s.name}' exists ({old.cron}, {old.recipe}); "
                                 f"remove it (rayctl schedule remove {s.name}), pass --replace, or pick --name")
            if old.crontab != s.crontab:
                _remove_lines(old.target, [s.name])
                content = target.read()
        else:
            stray = crontab.tagged(content).get(s.name)
            if stray and not replace:
                raise InputError(f"{target.label} already has a line tagged {crontab.TAG}{s.name} that rayctl "
                                 "does not know (its registry was lost?); pass --replace to take it over")
        target.write(crontab.with_line(content, s.name, s.line))
        reg[s.name] = s
        _prepare_dirs()
        _save_registry(reg)
    return s, "replaced" if old is not None else "added"


def _prepare_dirs() -> None:
    logs_dir().mkdir(parents=True, exist_ok=True)  # the crontab line appends its output here
    locks_dir().mkdir(parents=True, exist_ok=True)


def _remove_lines(target: crontab.Target, names) -> int:
    content = target.read()
    new, n = crontab.without(content, names)
    if n:
        target.write(new)
    return n


def remove(name: str, *, crontab_file=None) -> tuple[Schedule | None, int, str]:
    """Take out a schedule's crontab line(s) and registry entry; (schedule, lines removed, target label)."""
    check_name(name, "NAME")
    with _registry_lock():
        reg = load_registry()
        s = reg.get(name)
        targets = [s.target] if s is not None else []
        if crontab_file is not None or s is None:
            extra = crontab.Target(crontab_file)
            if not targets or extra.key != targets[0].key:
                targets.append(extra)
        counts = []
        for t in targets:
            try:
                counts.append(_remove_lines(t, [name]))
            except InputError:
                if s is not None or crontab_file is not None:
                    raise
                counts.append(0)  # no crontab command: there is no stray line to find either
        n = sum(counts)
        if s is None and n == 0:
            known = ", ".join(reg) or "none"
            raise InputError(f"no schedule named '{name}' (known: {known}); `rayctl schedule list` shows them")
        if s is not None:
            del reg[name]
            _save_registry(reg)
    label = " and ".join(t.label for t, c in zip(targets, counts) if c) or targets[0].label
    return s, n, label


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
                rows.append({"name": name, "state": "unregistered", "crontab": key, "line": lines[0].decode(
                    errors="replace"), "cron": None, "recipe": None, "next_runs": [], "last_run": None})
    return rows


def _row(s: Schedule, state: str, count: int) -> dict:
    try:
        nxt = [t.isoformat() for t in cron_expr.next_runs(s.cron, count)]
    except cron_expr.CronError:
        nxt = []
    return {"name": s.name, "state": state, "cron": s.cron, "recipe": s.recipe, "recipe_name": s.recipe_name,
            "kind": s.kind, "crontab": s.crontab, "source": s.source, "next_runs": nxt,
            "log": os.path.join(s.env.get("RAYCTL_HOME", str(rayctl_home())), "logs", f"schedule-{s.name}.log"),
            "line": s.line}


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


# ---------------------------------------------------------------- sync

@dataclass
class SyncResult:
    added: list[Schedule] = field(default_factory=list)
    updated: list[Schedule] = field(default_factory=list)
    removed: list[Schedule] = field(default_factory=list)
    unchanged: list[Schedule] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # YAML files that carry no schedule


def sync(folder, *, crontab_file=None, dry_run: bool = False) -> SyncResult:
    """Install every recipe in `folder` that carries `schedule:`; remove schedules whose recipe is gone.

    All recipes are checked before anything changes: one bad recipe (or a YAML file rayctl
    cannot read, which might carry a schedule) stops the sync with exit 2 and no change.
    Only schedules whose recipe file lies in `folder` are removed: those whose file is
    gone, and those that `sync` installed whose recipe no longer carries `schedule:`.
    """
    from ..recipe import yamlsafe

    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{folder}: not a folder of recipes")
    d = Path(os.path.abspath(d))
    files = sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    res = SyncResult()
    wanted: dict[str, Schedule] = {}
    problems: list[str] = []
    for f in files:
        try:
            data = f.read_bytes()
            doc = yamlsafe.load(data)
        except yamlsafe.Fail as e:
            problems.append(e.problem.render(str(f)) + " (cannot tell whether it carries a schedule)")
            continue
        except OSError as e:
            problems.append(f"{f}: cannot read: {e.strerror}")
            continue
        if not isinstance(doc.value, dict) or "schedule" not in doc.value:
            res.skipped.append(str(f))
            continue
        try:
            s = _make(f, cron=None, name=None, crontab_file=crontab_file, cron_user=None, env=(), source="sync")
        except RecipeError as e:
            problems.append(e.message)
            continue
        if s.name in wanted:
            problems.append(f"{f}: recipe name '{s.name}' is also the name of {wanted[s.name].recipe}; "
                            "schedule names must be unique")
            continue
        wanted[s.name] = s
    if problems:
        raise InputError("schedule sync changed nothing; fix these first:\n" + "\n".join(problems))
    target = crontab.Target(crontab_file)
    with _registry_lock():
        reg = load_registry()
        for name, s in wanted.items():
            old = reg.get(name)
            if old is not None and old.recipe != s.recipe:
                raise InputError(f"schedule sync changed nothing: schedule '{name}' already runs {old.recipe}, "
                                 f"and {s.recipe} has the same name; rename one or `rayctl schedule remove {name}`")
        inside = [s for s in reg.values() if Path(s.recipe).parent == d and s.name not in wanted]
        for s in inside:
            if not Path(s.recipe).exists() or s.source == "sync":
                res.removed.append(s)
        contents: dict = {target.key: target.read()}
        for s in res.removed:
            if s.crontab not in contents:
                contents[s.crontab] = s.target.read()
        for name, s in wanted.items():
            old = reg.get(name)
            if old is not None and old.crontab != s.crontab and old.crontab not in contents:
                contents[old.crontab] = old.target.read()
        new = dict(contents)
        for s in res.removed:
            new[s.crontab], _ = crontab.without(new[s.crontab], [s.name])
        for name, s in wanted.items():
            old = reg.get(name)
            present = s.line.encode() in new[s.crontab].splitlines()
            if old is not None and old.line == s.line and old.crontab == s.crontab and present:
                res.unchanged.append(old)
                continue
            if old is not None and old.crontab != s.crontab:
                new[old.crontab], _ = crontab.without(new[old.crontab], [name])
            new[s.crontab] = crontab.with_line(new[s.crontab], name, s.line)
            (res.updated if old is not None else res.added).append(s)
        if dry_run:
            return res
        for key, content in new.items():
            if content != contents[key]:
                crontab.Target(key).write(content)
        for s in res.removed:
            del reg[s.name]
        for s in res.added + res.updated:
            reg[s.name] = s
        _prepare_dirs()
        _save_registry(reg)
    return res
