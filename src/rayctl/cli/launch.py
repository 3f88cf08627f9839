"""`rayctl launch`, `runs`, `status`, `logs`, `stop`, `down`: parse, call rayctl.runs (launch, reconcile,
control), render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InputError
from .render import console, dump_json, money, number_flag

TARGET_HELP = "Where to run: local (default: the recipe's target), cloud, or an existing cluster's http://HEAD:8265."


def register(app: typer.Typer) -> None:
    app.command("launch")(launch_cmd)
    app.command("runs")(runs_cmd)
    app.command("status")(status_cmd)
    app.command("logs")(logs_cmd)
    app.command("stop")(stop_cmd)
    app.command("down")(down_cmd)


def launch_cmd(
    recipe: Path = typer.Argument(..., help="Recipe file to run.", show_default=False),
    target: Optional[str] = typer.Option(None, "--target", help=TARGET_HELP, show_default=False),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once the job is submitted."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before starting paid cloud resources."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings, errors and the final summary."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also stream Ray's and the libraries' own output "
                                 "(always in the run's log: `rayctl logs RUN`)."),
    wait: float = typer.Option(0, "--wait", min=0, metavar="SECONDS",
                               help="On the local cluster, queue up to SECONDS for CPUs/GPUs that other rayctl runs "
                                    "hold (the run shows `queued` in `rayctl runs`); 0 refuses at once (exit 1)."),
    objective: Optional[str] = typer.Option(None, "--objective", help="Cloud target: rank offers by $ per 1M "
                                            "output tokens (per-token) or by cluster $/h (hourly). Default: "
                                            "resources.objective, else per-token for batch-infer and serve, "
                                            "hourly for train and tune."),
) -> None:
    """Run a recipe as a Ray job: start or reuse the cluster, stream logs and progress, record the run.

    Exit codes: 0 succeeded (or serving, or submitted with --detach); 1 failed, stopped, or its resources are held by other work; 2 invalid input; 130 interrupted (the job is stopped).
    """
    from .. import recipe as recipe_mod
    from ..runs.launch import check_target, launch
    from ..runs.reporter import Reporter

    tgt = check_target(target) if target is not None else None
    number_flag("--wait", wait, high=7 * 24 * 3600, low_inclusive=True, what="seconds to queue")
    if objective is not None and objective not in ("per-token", "hourly"):
        raise InputError(f"--objective {objective}: must be one of per-token, hourly")
    r = recipe_mod.load(recipe)
    if objective is not None:
        import dataclasses

        r = dataclasses.replace(r, resources=dataclasses.replace(r.resources, objective=objective))
    if (tgt or r.target) == "cloud" and not yes:
        if not sys.stdin.isatty():
            raise InputError(f"{recipe}: the cloud target starts paid cloud resources; pass --yes to confirm "
                             "(there is no terminal to ask on)")
        if not typer.confirm(f"Launch '{r.name}' on a paid cloud offer (see `rayctl plan {recipe}`)?"):
            raise InputError("not confirmed; nothing was started")
    if quiet and verbose:
        raise InputError("--quiet and --verbose: choose one")
    if not quiet and sys.stdout.isatty() and sys.stderr.isatty():
        from .progress import RichReporter

        reporter = RichReporter(verbose=verbose)
    else:
        reporter = Reporter(quiet=quiet, verbose=verbose)
    row = launch(r, target=tgt, detach=detach, quiet=quiet, reporter=reporter, wait=wait)
    _summary(row, detach)


def _summary(row: dict, detach: bool) -> None:
    from ..ledger import FINAL

    con = console()
    rid = row["id"]
    m = row.get("metrics") or {}
    if row["status"] == "serving":
        con.print(f"[green]serving[/] run {rid} at [bold]{m.get('url', '?')}[/]  "
                  f"(stop with `rayctl stop {rid}`)")
        _local_cluster_note(con, row)
        return
    if detach and row["status"] not in FINAL:
        con.print(f"submitted run {rid} as Ray job {row.get('ray_job_id')} on {row.get('ray_address')} "
                  f"(detached)\n  follow: rayctl logs {rid} --follow   status: rayctl status {rid}   "
                  f"stop: rayctl stop {rid}")
        return
    dur = row.get("duration_s")
    con.print(f"[green]succeeded[/] run {rid} in {_dur(dur)} (Ray job {row.get('ray_job_id')})")
    facts = []
    if row.get("rows") is not None:
        facts.append(f"{row['rows']:,} rows")
    if row.get("input_tokens") is not None:
        facts.append(f"{row['input_tokens']:,} input tokens")
    if row.get("output_tokens") is not None:
        facts.append(f"{row['output_tokens']:,} output tokens")
    if facts:
        con.print("  " + " · ".join(facts))
    tput = throughput(row)
    if tput:
        con.print(f"  throughput: {tput}", markup=False)
    for key, label in (("output", "output written"), ("checkpoint", "checkpoint"), ("best_config", "best config"),
                       ("best_metric", "best metric")):
        if m.get(key) is not None:
            con.print(f"  {label}: {m[key]}", markup=False)
    shown = {"rows", "input_tokens", "output_tokens", "output", "checkpoint", "best_config", "best_metric", "url",
             "error", "output_tokens_per_s", "rows_per_s", "elapsed_s"}  # the rates: the one throughput line
    extra = [f"{k}={v}" for k, v in sorted(m.items()) if k not in shown and isinstance(v, (int, float, str))
             and not isinstance(v, bool) and len(str(v)) <= 40]
    if extra:
        con.print("  metrics: " + " ".join(extra[:12]), markup=False)
    where = "local" if row.get("cluster") == "local" else row.get("cluster") or row.get("target")
    con.print(f"  cost {money(row.get('cost_usd'))} ({where}) · the job's whole output: `rayctl logs {rid}`",
              markup=False)
    _local_cluster_note(con, row)


def throughput(row: dict) -> str | None:
    """The run's one throughput figure, saying what it measures: output tokens per second over
    the job's own time when the job measured it (batch-infer: read, generate, write), else over
    the whole run (cluster start included)."""
    out, m = row.get("output_tokens"), row.get("metrics") or {}
    if not out:
        return None
    job_s = m.get("elapsed_s")
    if isinstance(job_s, (int, float)) and not isinstance(job_s, bool) and job_s > 0:
        return (f"{out / job_s:,.1f} output tokens/s ({out:,} output tokens in the job's {_dur(job_s)}: "
                "read, generate, write)")
    dur = row.get("duration_s")
    if dur:
        return f"{out / dur:,.1f} output tokens/s ({out:,} output tokens in the whole run's {_dur(dur)})"
    return None


def _local_cluster_note(con, row: dict) -> None:
    if row.get("cluster") == "local":
        con.print("  the local Ray cluster keeps running for the next launch; `rayctl down` stops it", markup=False)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def runs_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print the rows as one JSON document."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1_000_000_000, help="Show at most N runs, newest first."),
    status: Optional[List[str]] = typer.Option(None, "--status", help="Only runs with this status (repeatable)."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Only runs of this recipe name."),
) -> None:
    """List recorded runs, newest first (live runs are first checked against their clusters)."""
    from ..runs.reconcile import reconcile
    from ..ledger import STATUSES, Ledger

    for s in status or []:
        if s not in STATUSES:
            raise InputError(f"--status: '{s}' is not a run status; use one of: {', '.join(STATUSES)}")
    with Ledger() as led:
        reconcile(led)
        rows = led.runs(status=status or None, recipe=recipe, limit=limit)
    if json_out:
        dump_json({"runs": rows})
        return
    if not rows:
        typer.echo("no runs recorded yet (rayctl launch RECIPE)")
        return
    from rich.table import Table

    t = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in ("run", "kind", "target", "status", "started (UTC)", "time", "rows", "tokens in/out", "cost"):
        t.add_column(col, justify="right" if col in ("time", "rows", "cost") else "left")
    for r in rows:
        tokens = "-" if r.get("input_tokens") is None and r.get("output_tokens") is None else \
            f"{r.get('input_tokens') or 0:,}/{r.get('output_tokens') or 0:,}"
        t.add_row(r["id"], r["kind"], r["target"], _status_text(r["status"]), r["started_at"][:19].replace("T", " "),
                  _dur(r.get("duration_s")), "-" if r.get("rows") is None else f"{r['rows']:,}", tokens,
                  money(r.get("cost_usd")))
    console().print(t)
    for r in rows:
        if r["status"] in ("queued", "lost") and r.get("reason"):
            console().print(f"{r['id']} {r['status']}: {r['reason']}", markup=False, highlight=False)


def _status_text(s: str) -> str:
    color = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "stopped": "yellow",
             "running": "cyan", "serving": "cyan", "queued": "magenta", "lost": "red"}.get(s)
    return f"[{color}]{s}[/]" if color else s


def status_cmd(
    run: str = typer.Argument(..., help="Run id (or a unique prefix).", show_default=False),
    json_out: bool = typer.Option(False, "--json", help="Print the run as one JSON document."),
) -> None:
    """Show one run, refreshed from its cluster while it is live."""
    from ..runs.reconcile import refresh
    from ..ledger import Ledger

    with Ledger() as led:
        row = refresh(led, run)
        segments = led.segments(row["id"])
        events = led.events(row["id"])
    if json_out:
        dump_json({**row, "segments": segments, "events": events})
        return
    con = console()
    con.print(f"[bold]{row['id']}[/]  {_status_text(row['status'])}")
    for k in ("recipe", "kind", "target", "cluster", "ray_address", "ray_job_id", "cloud", "region", "zone",
              "instance_type", "started_at", "ended_at", "duration_s", "reason", "rows", "input_tokens",
              "output_tokens", "cost_usd", "log_path", "recipe_path", "schedule"):
        v = row.get(k)
        if v is not None:
            con.print(f"  {k:14} {v}", markup=False, highlight=False)
    if row.get("metrics"):
        import json

        con.print(f"  {'metrics':14} {json.dumps(row['metrics'], sort_keys=True)}", markup=False, highlight=False)


def logs_cmd(
    run: str = typer.Argument(..., help="Run id (or a unique prefix).", show_default=False),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
    raw: bool = typer.Option(False, "--raw", help="Keep the protocol lines (progress and metrics events) the "
                             "job prints for rayctl."),
) -> None:
    """Print a run's job log (from the cluster while it runs, else from the saved log file).

    The job's whole output, Ray's lines included; without --raw, less the protocol lines (`::rayctl::`)."""
    from ..runs.control import client_or_none
    from ..runs.follow import follow as follow_job
    from ..runs.reconcile import LIVE, get_run, refresh
    from ..ledger import Ledger
    from ..protocol import parse_line
    from ..recipe import secret_values
    from ..redact import redact

    with Ledger() as led:
        row = get_run(led, run)
        secrets = secret_values(row.get("recipe_path"))  # masked in every line printed

        def out(text: str) -> None:
            if not raw:
                text = "".join(ln for ln in text.splitlines(keepends=True) if parse_line(ln) is None)
            sys.stdout.write(redact(text, extra=secrets))
            sys.stdout.flush()

        if row["status"] in LIVE and row["target"] == "cloud":
            from ..providers.skypilot import provider as skypilot

            skypilot.cloud_logs(row, follow, led)
            return
        if row["status"] in LIVE and row.get("ray_job_id") and row["target"] != "cloud":
            cl = client_or_none(row.get("ray_address"))
            if cl is not None:
                if follow:
                    # Only watch: never stop the job for waiting (no pending/busy limits here).
                    follow_job(cl, row["ray_job_id"], pending_timeout=float("inf"),
                               on_line=lambda ln: out(ln + "\n"))
                    refresh(led, row["id"])
                else:
                    out(cl.get_job_logs(row["ray_job_id"]))
                return
    path = Path(row["log_path"]) if row.get("log_path") else None
    if path is None or not path.exists():
        raise InputError(f"no log saved for run {row['id']}" + (f" ({path} does not exist)" if path else ""))
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:  # by line: a secret is never split between two writes
            out(line)


def stop_cmd(run: str = typer.Argument(..., help="Run id (or a unique prefix).", show_default=False)) -> None:
    """Stop a running job or a serving app; the run is recorded as stopped."""
    from ..runs.control import stop_run
    from ..runs.reconcile import LIVE, get_run
    from ..ledger import Ledger

    with Ledger() as led:
        before = get_run(led, run)
        row = stop_run(led, run)
    if before["status"] not in LIVE:
        typer.echo(f"run {row['id']} already ended: {row['status']}")
    else:
        typer.echo(f"stopped run {row['id']} ({row['status']})")


def down_cmd(
    cluster: str = typer.Argument("local", help="Cluster to stop: local (default) or a cloud cluster name."),
    all_: bool = typer.Option(False, "--all", help="Stop the local cluster and tear down every cloud cluster rayctl created."),
) -> None:
    """Stop a cluster rayctl started (the local Ray head by default), and the runs on it."""
    from ..runs.control import down
    from ..ledger import Ledger

    if all_:
        _down_all()
        return
    with Ledger() as led:
        result = down(led, cluster)
    if result is None:
        typer.echo(f"no {cluster} Ray cluster is running")
        return
    runs = result.get("runs_stopped") or []
    extra = f"; runs stopped: {', '.join(runs)}" if runs else ""
    typer.echo(f"stopped the {result.get('name', cluster)} Ray cluster"
               + (f" at {result['address']}" if result.get("address") else "")
               + (f" ({result['processes']} processes)" if result.get("processes") is not None else "") + extra)


def _down_all() -> None:
    """`rayctl down --all`: the local head, then every cloud cluster in rayctl's registry."""
    from ..runs.control import down
    from ..ledger import Ledger

    failed = 0
    with Ledger() as led:
        local = down(led, "local")
        typer.echo("local: " + ("stopped" if local else "not running"))
        from ..providers.skypilot import provider as skypilot

        for r in skypilot.down_all(led):
            typer.echo(f"{r['name']}: {r['result']}" + (f" (run {r['run_id']})" if r.get("run_id") else ""))
            failed += r["result"] != "down"
    if failed:
        typer.echo(f"{failed} cloud cluster(s) could not be torn down; see above and `rayctl cloud clusters --all`",
                   err=True)
        raise typer.Exit(1)
