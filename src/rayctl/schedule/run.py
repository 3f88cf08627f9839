"""`rayctl schedule run NAME`: one scheduled launch, safe to start from cron.

- **One at a time.** The run takes an exclusive `flock` on
  `$RAYCTL_HOME/locks/schedule-NAME.lock` without waiting. If an earlier run of the
  same schedule still holds it, this one writes a "still running" line and exits 0
  without launching anything. The kernel drops the lock when its process dies, so a
  crashed run never leaves a stale lock behind.
- **A rotated log.** Every line goes to `$RAYCTL_HOME/logs/schedule-NAME.log` (and to
  stdout). The crontab line appends the process's stdout/stderr to that same file, so
  even a crash before Python starts lands there. At the start of each run, the lock
  holder rotates the file when it is over `RAYCTL_LOG_MAX_BYTES` (default 5 MB):
  `.log` -> `.log.1` -> ... -> `.log.N`, keeping `RAYCTL_LOG_BACKUPS` (default 5) old files.
- **Plain output, meaningful exit codes**: 0 launched and succeeded (or skipped: still
  running), 1 the job failed, 2 bad input (unknown schedule, invalid recipe), 3 no
  feasible offer or over budget, 130 interrupted (SIGINT or SIGTERM; the launch tears
  down what it created).
- **A ledger row per run.** The launch records its run with the `schedule` column set.
  If the run fails before the launch could record anything (the recipe became invalid,
  say), this module records a failed row itself, so every run that held the lock shows
  up in `rayctl` history.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from . import registry as sched
from ..errors import EXIT_INTERRUPTED, InputError, RayctlError

DEFAULT_MAX_BYTES = 5_000_000
DEFAULT_BACKUPS = 5


def _stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise InputError(f"${name}={raw!r}: expected a whole number") from None
    if v < minimum:
        raise InputError(f"${name}={raw}: must be >= {minimum}")
    return v


def rotate(path: Path, max_bytes: int, backups: int) -> bool:
    """Shift `path` to `path.1` (and `.1` to `.2`, ...) when it holds `max_bytes` or more."""
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(backups - 1, 0, -1):
        src = path.with_name(f"{path.name}.{i}")
        if src.exists():
            os.replace(src, path.with_name(f"{path.name}.{i + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))
    return True


class RunLog:
    """Timestamped plain lines to the schedule's log file and to stdout, never twice to one file."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = path
        self.pid = os.getpid()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stdout_is_log = _same_file(sys.stdout, path)
        self._file = None
        if not self.stdout_is_log:
            self._file = open(path, "a", encoding="utf-8", errors="replace")

    def rotate(self) -> None:
        """Rotate the log if it is too big, and keep writing (and let stdout write) to the fresh file."""
        max_bytes = _env_int("RAYCTL_LOG_MAX_BYTES", DEFAULT_MAX_BYTES, 1)
        backups = _env_int("RAYCTL_LOG_BACKUPS", DEFAULT_BACKUPS, 1)
        if self._file:
            self._file.flush()
        if not rotate(self.path, max_bytes, backups):
            return
        if self.stdout_is_log:
            # The shell opened stdout/stderr on the file now renamed to .1: point them at the new one.
            sys.stdout.flush()
            sys.stderr.flush()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        else:
            self._file.close()
            self._file = open(self.path, "a", encoding="utf-8", errors="replace")

    def __call__(self, msg: str) -> None:
        text = "".join(f"{_stamp()} schedule {self.name} [pid {self.pid}]: {line}\n"
                       for line in (msg.rstrip("\n").split("\n") or [""]))
        if self._file:
            self._file.write(text)
            self._file.flush()
        sys.stdout.write(text)
        sys.stdout.flush()

    def raw(self, text: str) -> None:
        """Untimestamped text (a traceback) into the log file only."""
        if self._file:
            self._file.write(text)
            self._file.flush()
        elif self.stdout_is_log:
            sys.stdout.write(text)
            sys.stdout.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def _same_file(stream, path: Path) -> bool:
    try:
        a = os.fstat(stream.fileno())
        b = os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class _Lock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self.holder = ""

    def acquire(self) -> bool:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                self.holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            finally:
                os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {_stamp()}\n".encode(), 0)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(name: str, recipe_path: str | None = None) -> int:
    """Run schedule `name` once; returns the exit code."""
    sched.check_name(name, "NAME")
    registry_error = None
    try:
        entry = sched.load_registry().get(name)
    except InputError as e:
        if recipe_path is None:
            raise
        entry, registry_error = None, e  # the crontab line names the recipe: run it anyway
    if recipe_path is None:
        if entry is None:
            raise InputError(f"no schedule named '{name}'; `rayctl schedule list` shows them "
                             "(or pass --recipe FILE)")
        recipe_path = entry.recipe
    recipe_path = os.path.abspath(recipe_path)
    log = RunLog(name, sched.log_path(name))
    lock = _Lock(sched.lock_path(name))
    try:
        if not lock.acquire():
            log(f"still running ({lock.holder or 'another run holds the lock'}); skipping this run, "
                "nothing launched")
            return 0
        log.rotate()
        if registry_error is not None:
            log(f"warning: {registry_error.message}")
        old = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            return _run_locked(name, recipe_path, entry, log)
        finally:
            signal.signal(signal.SIGTERM, old)
    finally:
        lock.release()
        log.close()


def _run_locked(name: str, recipe_path: str, entry, log: RunLog) -> int:
    from .. import ledger as ledger_mod
    from .. import recipe as recipe_mod

    t0 = time.monotonic()
    since = ledger_mod.now()
    log(f"run started: recipe {recipe_path}")
    if entry is not None and entry.recipe != recipe_path:
        log(f"note: the registry lists {entry.recipe} for this schedule; running {recipe_path} "
            "as the crontab line says")
    recipe = None
    try:
        recipe = recipe_mod.load(recipe_path)
        os.chdir(os.path.dirname(recipe_path))  # relative paths resolve as in the recipe's folder
        from ..runs.launch import launch

        row = launch(recipe, quiet=True, schedule=name)
    except KeyboardInterrupt:
        log(f"interrupted after {time.monotonic() - t0:.1f} s")
        _ensure_row(name, recipe, entry, recipe_path, since, "interrupted", "interrupted (SIGINT/SIGTERM)", log)
        return EXIT_INTERRUPTED
    except RayctlError as e:
        for line in e.message.splitlines():
            log(f"error: {line}")
        log(f"run failed (exit {e.exit_code}) after {time.monotonic() - t0:.1f} s")
        status = "interrupted" if e.exit_code == EXIT_INTERRUPTED else "failed"
        _ensure_row(name, recipe, entry, recipe_path, since, status, e.message.splitlines()[0], log)
        return e.exit_code
    except Exception as e:  # a bug: full traceback to the log, one line to the user
        log(f"internal error: {type(e).__name__}: {e} (traceback in {log.path})")
        log.raw(traceback.format_exc())
        _ensure_row(name, recipe, entry, recipe_path, since, "failed", f"internal error: {type(e).__name__}: {e}",
                    log)
        return 1
    status = (row or {}).get("status", "succeeded")
    rid = (row or {}).get("id", "?")
    cost = (row or {}).get("cost_usd")
    log(f"run {rid} {status} after {time.monotonic() - t0:.1f} s"
        + (f", cost ${cost:,.4f}" if isinstance(cost, (int, float)) else ""))
    return {"failed": 1, "interrupted": EXIT_INTERRUPTED}.get(status, 0)


def _ensure_row(name, recipe, entry, recipe_path, since, status, reason, log) -> None:
    """Record a failed/interrupted run unless the launch already recorded one for this run."""
    from ..ledger import Ledger

    try:
        with Ledger() as led:
            mine = [r for r in led.runs(since=since) if r.get("schedule") == name]
            if mine:
                return
            rid = led.start_run(
                recipe=recipe.name if recipe else (entry.recipe_name if entry else name),
                kind=recipe.kind if recipe else (entry.kind if entry else "unknown"),
                target=recipe.target if recipe else "unknown",
                recipe_path=recipe_path, recipe_sha256=recipe.sha256 if recipe else None,
                schedule=name, log_path=str(log.path))
            led.finish(rid, status, reason)
            log(f"recorded run {rid} as {status} in the ledger")
    except Exception as e:  # the ledger must not hide the run's own error
        log(f"warning: could not record the run in the ledger: {type(e).__name__}: {e}")

