"""What the user sees while a launch runs: rayctl's stages, progress and warnings.

`Reporter` is the plain, log-friendly one (cron, CI, pipes): timestamped lines, one per
stage and one per progress event. `rayctl launch` on a terminal uses
`cli/progress.RichReporter`, a subclass with one live progress bar.

The job's log goes whole to the run's log file (`rayctl logs RUN`); on the screen only
rayctl's own lines appear (`screen_text`): a built-in workload's `rayctl: ...` lines, and
a user-code job's own output without Ray's and the libraries' log lines (Ray's INFO lines,
core_worker lines, tqdm bars). `verbose` streams every line. `format_progress` writes one
progress event (`::rayctl::progress`) as text for both reporters; `Rate` measures its
tokens/s and ETA.
"""

from __future__ import annotations

import re
import sys
import time

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colour codes, kept out of saved logs and pipes

# Ray prefixes lines that worker processes print: "(MapWorker(MapBatches(Generator)) pid=123, ip=...) text".
WORKER_PREFIX_RE = re.compile(r"^\((?:[^()]|\([^()]*(?:\([^()]*\))*[^()]*\))*pid=\d+[^)]*\)\s?")
_RAY_NOISE = [re.compile(p) for p in (
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\s+(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+\S+:\d+ -- ",  # Python logging
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEF] \d+ \d+\] \S+:\d+: ",  # Ray's C++ core (core_worker.cc ...)
    r"^Running entrypoint for job \S+: ",  # Ray's job supervisor
    r"\d+%\|.*\|\s*\d+(\.\d+)?[kMG]?/",  # tqdm bars ("Writing model shards: 100%|####| 1/1 [...]")
    r"\[repeated \d+x across cluster\]",  # Ray's log deduplication summary
    r"^(\(raylet\)|\(autoscaler\)|\(pid=gcs_server\))",
    r"^\S+\.py:\d+: \w*Warning: ",  # Python warnings from libraries
)]


def strip_worker_prefix(line: str) -> str:
    """The line without Ray's `(Actor pid=N)` prefix and colour codes."""
    return WORKER_PREFIX_RE.sub("", ANSI_RE.sub("", line), count=1)


def is_ray_noise(line: str) -> bool:
    """A line Ray or a library printed (log records, core_worker lines, tqdm bars, blank worker lines)."""
    text = strip_worker_prefix(line)
    if not text.strip():
        return True
    return any(p.search(text) for p in _RAY_NOISE)


def screen_text(line: str, user_code: bool) -> str | None:
    """What a job log line shows on the launch screen, or None for the run's log only.

    A built-in workload's own messages start with `rayctl:`; everything else it prints
    comes from Ray and the libraries. A user-code job's output is the user's, less the
    lines Ray and the libraries print.
    """
    text = strip_worker_prefix(line).rstrip()
    if text.startswith("rayctl:"):
        return text
    if not user_code or is_ray_noise(line):
        return None
    return line


class Rate:
    """tokens/s and ETA of one progress unit, measured from its events as they arrive."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.first: tuple[float, float, float] | None = None  # (t, done, tokens) at the unit's first event
        self.last: tuple[float, float, float] | None = None

    def feed(self, ev: dict) -> None:
        done = ev.get("done") or 0
        tokens = ev.get("output_tokens") or 0
        now = self.clock()
        if self.first is None:
            self.first = (now, done, tokens)
        self.last = (now, done, tokens)

    def tokens_per_s(self) -> float | None:
        if not self.first or not self.last or self.last[0] - self.first[0] < 1.0:
            return None
        return (self.last[2] - self.first[2]) / (self.last[0] - self.first[0])

    def eta_s(self, total) -> float | None:
        if not total or not self.first or not self.last or self.last[0] - self.first[0] < 1.0:
            return None
        rate = (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])
        if rate <= 0:
            return None
        return max(0.0, (total - self.last[1]) / rate)


class Reporter:
    """Plain, log-friendly output (cron, CI, pipes). The CLI passes a rich one on a terminal.

    Timestamped status and progress lines go to stderr, a user-code job's own output to
    stdout; `quiet` keeps only warnings (and the CLI's final summary); `verbose` also
    streams Ray's and the libraries' lines.
    """

    def __init__(self, quiet: bool = False, verbose: bool = False):
        self.quiet = quiet
        self.verbose = verbose and not quiet
        self.user_code = False
        self._rates: dict[str, Rate] = {}
        self._last_event: tuple | None = None

    def _err(self, msg: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} rayctl: {msg}\n")
        sys.stderr.flush()

    def begin_job(self, user_code: bool) -> None:
        """The job is submitted; `user_code`: its output is the user's own (not a built-in workload's)."""
        self.user_code = user_code

    def stage(self, msg: str) -> None:
        if not self.quiet:
            self._err(msg)

    def job_status(self, status: str, run_id: str) -> None:
        if not self.quiet:
            self._err(f"job is {status.lower()}")

    def log_line(self, line: str) -> None:
        """One line of the job's log (not a protocol line): shown if it is rayctl's or the user's."""
        if self.quiet:
            return
        text = line if self.verbose else screen_text(line, self.user_code)
        if text is None:
            return
        if not self.verbose and text.startswith("rayctl:"):
            self._err(text[len("rayctl:"):].strip())
        else:
            self._out(text)

    def _out(self, line: str) -> None:
        sys.stdout.write((line if sys.stdout.isatty() else ANSI_RE.sub("", line)) + "\n")
        sys.stdout.flush()

    def rate(self, ev: dict) -> Rate:
        """The unit's Rate, fed with `ev`."""
        r = self._rates.setdefault(str(ev.get("unit", "steps")), Rate())
        r.feed(ev)
        return r

    def progress(self, ev: dict) -> None:
        """Every progress event is one line (a repeat of the previous one is not)."""
        if self.quiet:
            return
        r = self.rate(ev)
        key = (ev.get("unit"), ev.get("done"), ev.get("total"), ev.get("message"), ev.get("output_tokens"))
        if key == self._last_event:
            return
        self._last_event = key
        self._err(f"progress: {format_progress(ev, eta_s=r.eta_s(ev.get('total')))}")

    def metrics(self, metrics: dict) -> None:
        pass

    def warn(self, msg: str) -> None:
        sys.stderr.write(f"rayctl: warning: {msg}\n")
        sys.stderr.flush()

    def close(self) -> None:
        pass


def format_progress(ev: dict, eta_s: float | None = None) -> str:
    """`rows 64/200 (32%) · 2,048 output tokens · ETA 40 s · generating`."""
    unit = ev.get("unit", "steps")
    done, total = ev.get("done"), ev.get("total")
    s = f"{unit} {fmt_count(done)}" + (f"/{fmt_count(total)}" if total else "")
    if total:
        s += f" ({100.0 * done / total:.0f}%)"
    if ev.get("output_tokens") is not None:
        s += f" · {fmt_count(ev['output_tokens'])} output tokens"
    if eta_s is not None and total and done is not None and done < total:
        s += f" · ETA {fmt_duration(eta_s)}"
    if ev.get("message"):
        s += f" · {ev['message']}"
    return s


def fmt_duration(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def fmt_count(x) -> str:
    """A count as the screen shows it: 12,345 (a fractional one with 2 decimals)."""
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.2f}"
    return f"{int(x):,}" if isinstance(x, (int, float)) else str(x)
