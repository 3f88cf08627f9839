"""What the user sees while a launch runs: stage lines, the job's log, progress and warnings.

`Reporter` is the plain, log-friendly one (cron, CI, pipes); `rayctl launch` on a terminal
uses `cli/progress.RichReporter`, a subclass. `format_progress` writes one progress event
(`::rayctl::progress`) as text for both.
"""

from __future__ import annotations

import re
import sys
import time

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colour codes, kept out of saved logs and pipes


class Reporter:
    """Plain, log-friendly output (cron, CI, pipes). The CLI passes a rich one on a terminal.

    Status lines go to stderr with a timestamp, the job's own output to stdout; `quiet`
    keeps only warnings (and the CLI's final summary).
    """

    PROGRESS_EVERY_S = 5.0

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._last_progress = 0.0

    def _err(self, msg: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} rayctl: {msg}\n")
        sys.stderr.flush()

    def stage(self, msg: str) -> None:
        if not self.quiet:
            self._err(msg)

    def job_status(self, status: str, run_id: str) -> None:
        if not self.quiet:
            self._err(f"job {run_id} is {status}")

    def log_line(self, line: str) -> None:
        if not self.quiet:
            sys.stdout.write((line if sys.stdout.isatty() else ANSI_RE.sub("", line)) + "\n")
            sys.stdout.flush()

    def progress(self, ev: dict) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        done, total = ev.get("done"), ev.get("total")
        final = total is not None and done is not None and done >= total
        if not final and now - self._last_progress < self.PROGRESS_EVERY_S:
            return
        self._last_progress = now
        self._err(f"progress: {format_progress(ev)}")

    def metrics(self, metrics: dict) -> None:
        pass

    def warn(self, msg: str) -> None:
        sys.stderr.write(f"rayctl: warning: {msg}\n")
        sys.stderr.flush()

    def close(self) -> None:
        pass


def format_progress(ev: dict) -> str:
    unit = ev.get("unit", "steps")
    done, total = ev.get("done"), ev.get("total")
    s = f"{unit} {_n(done)}" + (f"/{_n(total)}" if total else "")
    if total:
        s += f" ({100.0 * done / total:.0f}%)"
    if ev.get("message"):
        s += f" {ev['message']}"
    return s


def _n(x) -> str:
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.2f}"
    return f"{int(x):,}" if isinstance(x, (int, float)) else str(x)

