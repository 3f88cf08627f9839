"""Live launch output on a terminal: a spinner with the stage, a progress bar for the
rows/trials/epochs the job reports, and the job's log lines scrolling above it."""

from __future__ import annotations

from ..runs.reporter import Reporter, format_progress


class RichReporter(Reporter):
    def __init__(self):
        super().__init__(quiet=False)
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn)

        self.console = Console(highlight=False)
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=30),
                                  MofNCompleteColumn(), TimeElapsedColumn(), console=self.console,
                                  transient=True, refresh_per_second=8)
        self._task = self._progress.add_task("starting", total=None)
        self._stage = "starting"
        self._progress.start()

    def _describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    def stage(self, msg: str) -> None:
        self.console.print(f"[dim]rayctl:[/] {msg}", markup=True, highlight=False)
        self._stage = msg.split(";")[0]
        self._describe(self._stage)

    def job_status(self, status: str, run_id: str) -> None:
        self._stage = f"job {status.lower()}"
        self._describe(self._stage)

    def log_line(self, line: str) -> None:
        from rich.text import Text

        self.console.print(Text.from_ansi(line), soft_wrap=True)

    def progress(self, ev: dict) -> None:
        total = ev.get("total")
        self._progress.update(self._task, total=total, completed=ev.get("done") or 0,
                              description=f"{ev.get('unit', 'steps')}"
                                          + (f" [dim]{ev['message']}[/]" if ev.get("message") else ""))

    def warn(self, msg: str) -> None:
        self.console.print(f"[yellow]rayctl: warning:[/] {msg}", highlight=False)

    def close(self) -> None:
        self._progress.stop()


__all__ = ["RichReporter", "format_progress"]
