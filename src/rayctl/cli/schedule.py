"""`rayctl schedule add|list|remove|run|sync`: recipes launched by cron."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .render import dump_json

CRONTAB_FILE_HELP = ("Write this crontab-format file instead of the user's crontab (for tests, or to manage cron "
                     "files yourself; install it with `crontab FILE`).")


def register(app: typer.Typer) -> None:
    sched_app = typer.Typer(help="Run recipes from cron: install, list, remove and run schedules.",
                            no_args_is_help=True)
    sched_app.command("add")(add)
    sched_app.command("list")(list_cmd)
    sched_app.command("remove")(remove)
    sched_app.command("run")(run)
    sched_app.command("sync")(sync)
    app.add_typer(sched_app, name="schedule")


def add(
    recipe: Path = typer.Argument(..., help="Recipe file to run on a schedule.", show_default=False),
    cron: Optional[str] = typer.Option(None, "--cron", help="Cron expression, e.g. \"0 2 * * *\" (default: the "
                                       "recipe's schedule: field).", show_default=False),
    name: Optional[str] = typer.Option(None, "--name", help="Schedule name (default: the recipe's name)."),
    crontab_file: Optional[Path] = typer.Option(None, "--crontab-file", help=CRONTAB_FILE_HELP),
    cron_user: Optional[str] = typer.Option(None, "--cron-user", help="Add a user column (for /etc/cron.d files)."),
    env: Optional[List[str]] = typer.Option(None, "--env", help="KEY=VALUE the scheduled run gets (repeatable), "
                                            "e.g. AWS_PROFILE=batch."),
    replace: bool = typer.Option(False, "--replace", help="Replace a schedule of the same name."),
) -> None:
    """Validate a recipe and a cron expression, then install a tagged line in the crontab."""
    from ..recipe import cron as cron_expr
    from ..schedule import install, registry as sched

    s, what = install.add(recipe, cron=cron, name=name, crontab_file=crontab_file, cron_user=cron_user,
                        env=env or (), replace=replace)
    nxt = cron_expr.next_runs(s.cron, 1)[0].isoformat()
    where = f"crontab file {s.crontab}" if s.crontab else "your crontab"
    typer.echo(f"{what} schedule '{s.name}' ({s.cron}) in {where}: runs {s.recipe}")
    typer.echo(f"next run {nxt}; log {sched.log_path(s.name)}")


def list_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
    count: int = typer.Option(1, "--next", min=1, max=100, help="How many next run times to show."),
    crontab_file: Optional[Path] = typer.Option(None, "--crontab-file",
                                                help="Also look for rayctl lines in this crontab-format file."),
) -> None:
    """List schedules: cron, state in the crontab, next run time(s), last run."""
    from ..schedule import listing

    rows = listing.listing(crontab_file=crontab_file, count=count)
    if json_out:
        dump_json({"schedules": rows})
        return
    if not rows:
        typer.echo("no schedules (add one with `rayctl schedule add RECIPE --cron \"0 2 * * *\"`)")
        return
    from rich.table import Table

    from .render import console

    t = Table(box=None, header_style="bold")
    for col in ("name", "cron", "state", "next run", "last run", "recipe"):
        t.add_column(col)
    for r in rows:
        last = r.get("last_run")
        t.add_row(r["name"], r["cron"] or "-", r["state"], ", ".join(r["next_runs"]) or "-",
                  f"{last['status']} {last['started_at']}" if last else "-", r["recipe"] or r.get("line", ""))
    console().print(t)


def remove(
    name: str = typer.Argument(..., help="Schedule name.", show_default=False),
    crontab_file: Optional[Path] = typer.Option(None, "--crontab-file",
                                                help="Remove from this file (default: where it was installed)."),
) -> None:
    """Remove a schedule's crontab line; every other line stays byte-for-byte."""
    from ..schedule import install

    _s, n, label = install.remove(name, crontab_file=crontab_file)
    typer.echo(f"removed schedule '{name}' ({n} line{'s' if n != 1 else ''} from {label})")


def run(
    name: str = typer.Argument(..., help="Schedule name.", show_default=False),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Recipe file (the crontab line passes it; "
                                          "default: the one registered)."),
) -> None:
    """Launch a schedule's recipe once (this is what cron calls): locked, logged, recorded."""
    from ..schedule.run import run as run_schedule

    code = run_schedule(name, str(recipe) if recipe is not None else None)
    raise typer.Exit(code)


def sync(
    folder: Path = typer.Argument(..., help="Folder of recipes.", show_default=False),
    crontab_file: Optional[Path] = typer.Option(None, "--crontab-file", help=CRONTAB_FILE_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check and show what would change; change nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Install every recipe in FOLDER that carries `schedule:`; remove schedules whose recipe is gone."""
    from ..schedule import install

    res = install.sync(folder, crontab_file=crontab_file, dry_run=dry_run)
    if json_out:
        dump_json({"dry_run": dry_run, **{k: [{"name": s.name, "cron": s.cron, "recipe": s.recipe}
                                              for s in getattr(res, k)]
                                          for k in ("added", "updated", "removed", "unchanged")},
                   "skipped": res.skipped})
        return
    for verb, items in (("add", res.added), ("update", res.updated), ("remove", res.removed)):
        for s in items:
            typer.echo(f"{'would ' + verb if dry_run else verb.rstrip('e') + 'ed'} {s.name} ({s.cron}) {s.recipe}")
    typer.echo(f"{'dry run: ' if dry_run else ''}{len(res.added)} added, {len(res.updated)} updated, "
               f"{len(res.removed)} removed, {len(res.unchanged)} unchanged, "
               f"{len(res.skipped)} recipe file(s) without schedule")
