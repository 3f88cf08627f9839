"""Installing schedules: `add`, `remove` and `sync` change the crontab and the registry
together, under the registry lock.

A recipe's own `schedule:` field is checked here (cron syntax, with the file, line and
column of the field), when adding and syncing.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..recipe import cron as cron_expr
from . import crontab
from .crontab_line import build_line, line_env, parse_env
from .registry import Schedule, check_name, load_registry, locks_dir, logs_dir, registry_lock, save_registry
from ..errors import InputError, RecipeError


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

    r = recipe_mod.load(path)
    if r.schedule is None:
        return r, None
    try:
        return r, cron_expr.check(r.schedule)
    except cron_expr.CronError as e:
        raise recipe_mod.field_error(r, ("schedule",), f"'{r.schedule}' is not a cron expression cron can run: "
                                                       f"{e}") from None


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
                 env=line_env(parse_env(env)), source=source, added_at=_now())
    s.line = build_line(s)
    return s


def add(recipe_path, *, cron: str | None = None, name: str | None = None, crontab_file=None,
        cron_user: str | None = None, env=(), replace: bool = False) -> tuple[Schedule, str]:
    """Validate and install one schedule; (schedule, 'added' | 'replaced' | 'unchanged')."""
    s = _make(recipe_path, cron=cron, name=name, crontab_file=crontab_file, cron_user=cron_user, env=env,
              source="add")
    with registry_lock():
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
        save_registry(reg)
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
    with registry_lock():
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
            save_registry(reg)
    label = " and ".join(t.label for t, c in zip(targets, counts) if c) or targets[0].label
    return s, n, label


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
    with registry_lock():
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
        save_registry(reg)
    return res
