"""Live launch output on a terminal: rayctl's stage lines scrolling above ONE live progress
bar (rows/trials/epochs done of total, output tokens, output tokens/s, ETA) for what the
job reports. The bar stays on screen when the job ends (finished, without the live rate:
the summary states the run's one throughput figure)."""

from __future__ import annotations

from ..runs.reporter import Reporter, fmt_count, format_progress


class RichReporter(Reporter):
    def __init__(self, verbose: bool = False):
        super().__init__(quiet=False, verbose=verbose)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(highlight=False)
        self._progress = Progress(SpinnerColumn(finished_text="[green]✔[/]"), TextColumn("{task.description}"),
                                  BarColumn(bar_width=30), TextColumn("{task.fields[counts]}"),
                                  TimeElapsedColumn(), console=self.console, transient=False,
                                  refresh_per_second=8)
        self._task = None
        self._progress.start()

    # The stage, job-status and log-line rules are the plain Reporter's; only where a line goes differs:
    def _err(self, msg: str) -> None:
        """A rayctl line, above the bar."""
        from rich.text import Text

        self.console.print(Text.assemble(("rayctl: ", "dim"), msg), soft_wrap=True)

    def _out(self, line: str) -> None:
        """A user-code job's own line (or, with --verbose, Ray's), colours kept."""
        from rich.text import Text

        self.console.print(Text.from_ansi(line), soft_wrap=True)

    def progress(self, ev: dict) -> None:
        r = self.rate(ev)
        total, done = ev.get("total"), ev.get("done") or 0
        finished = total is not None and done >= total
        parts = [f"{fmt_count(done)}/{fmt_count(total)}" if total else fmt_count(done)]
        if ev.get("output_tokens") is not None:
            parts.append(f"{fmt_count(ev['output_tokens'])} tokens")
        tps, eta = r.tokens_per_s(), r.eta_s(total)
        if not finished:
            if tps is not None:
                parts.append(f"{tps:,.1f} tok/s")
            parts.append(f"ETA {_fmt_eta(eta)}" if eta is not None else "ETA -")
        from rich.markup import escape

        desc = f"{ev.get('unit', 'steps')}" + (f" [dim]{escape(ev['message'])}[/]" if ev.get("message") else "")
        if self._task is None:  # the one bar, from the first progress event on
            self._task = self._progress.add_task(desc, total=total, completed=done, counts=" · ".join(parts))
        else:
            self._progress.update(self._task, total=total, completed=done, description=desc,
                                  counts=" · ".join(parts))

    def warn(self, msg: str) -> None:
        from rich.text import Text

        self.console.print(Text.assemble(("rayctl: warning: ", "yellow"), msg), soft_wrap=True)

    def close(self) -> None:
        self._progress.stop()


def _fmt_eta(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}"


__all__ = ["RichReporter", "format_progress"]
