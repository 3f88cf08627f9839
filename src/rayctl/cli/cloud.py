"""`rayctl pricing refresh|status` and `rayctl cloud check|clusters|down` (the cloud target's CLI).

Thin: parse, call `rayctl.prices` / `rayctl.providers.*`, render. `launch --target
cloud`, `status`, `logs`, `stop` and `down --all` live in `cli/launch.py` and call
`rayctl.providers.skypilot`.
"""

from __future__ import annotations

from typing import List, Optional

import typer

from ..errors import EXIT_INPUT, InputError
from .render import console, dump_json, number_flag, warn

CLOUDS = ("aws", "gcp")


def register(app: typer.Typer) -> None:
    pricing = typer.Typer(help="Live cloud prices and GPU availability for the planner.", no_args_is_help=True)
    pricing.command("refresh")(refresh)
    pricing.command("status")(pricing_status)
    app.add_typer(pricing, name="pricing")
    cloud = typer.Typer(help="The cloud target (SkyPilot): credentials, clusters rayctl created, cleanup.",
                        no_args_is_help=True)
    cloud.command("check")(check)
    cloud.command("clusters")(clusters)
    cloud.command("down")(down)
    app.add_typer(cloud, name="cloud")


def refresh(
    cloud: Optional[str] = typer.Option(None, "--cloud", help="aws or gcp (default: both)."),
    region: Optional[List[str]] = typer.Option(None, "--region", help="Only these regions (repeatable)."),
    project: Optional[str] = typer.Option(None, "--project", help="GCP project (default: gcloud's)."),
    timeout: float = typer.Option(20.0, "--timeout", min=1.0, help="Seconds per network call."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Fetch AWS spot prices per AZ and GCP GPU availability/quota into rayctl's price cache."""
    number_flag("--timeout", timeout, low=1.0, low_inclusive=True, high=3600.0, what="seconds per network call")
    if cloud is not None and cloud not in CLOUDS:
        raise InputError(f"--cloud {cloud}: must be one of {', '.join(CLOUDS)}")
    wanted = [cloud] if cloud else list(CLOUDS)
    from .. import prices
    from ..providers import cloud_check

    checks = cloud_check.check(wanted)
    usable = [c for c in wanted if checks[c].enabled]
    if not usable:
        raise InputError("pricing refresh: no usable credentials for " + ", ".join(wanted) + ". Nothing changed; "
                         "the planner keeps its current data.\n" + cloud_check.summary(checks))
    report: dict = {}
    for c in wanted:
        if c not in usable:
            report[c] = {"ok": False, "errors": {"credentials": checks[c].detail}}
            continue
        if c == "aws":
            report[c] = prices.refresh_aws(regions=region or None, timeout_s=timeout)
        else:
            report[c] = prices.refresh_gcp(project=project, regions=region or None, timeout_s=timeout)
    from .. import price_cache

    if json_out:
        dump_json({"cache": str(price_cache.cache_dir()), "clouds": report})
    else:
        for c, r in report.items():
            if r.get("ok"):
                n = r.get("rows", r.get("accelerator_rows", 0))
                typer.echo(f"{c}: ok ({n} rows, {len(r.get('regions') or [])} region(s))")
            for scope, e in (r.get("errors") or {}).items():
                warn(f"{c}: {scope}: {e}")
        typer.echo(f"cache: {price_cache.cache_dir()}")
    if not any(r.get("ok") for r in report.values()):
        raise typer.Exit(1)


def pricing_status(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Show what the live price cache holds and how old it is."""
    from .. import price_cache

    st = price_cache.status()
    if json_out:
        dump_json(st)
        return
    typer.echo(f"cache: {st['dir']}")
    if not st["clouds"]:
        typer.echo("empty: run `rayctl pricing refresh`")
    for c, m in st["clouds"].items():
        age = m.get("age_hours")
        typer.echo(f"{c}: fetched {m.get('fetched_at') or 'never'}"
                   + (f" ({age:g} h ago)" if age is not None else "")
                   + (f"; last error: {m['error']}" if m.get("error") else ""))


def check(
    cloud: Optional[List[str]] = typer.Option(None, "--cloud", help="Clouds to check (default: aws, gcp)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Which clouds have usable credentials (seconds; does not start SkyPilot's API server)."""
    from ..providers import cloud_check

    wanted = list(cloud) if cloud else list(CLOUDS)
    res = cloud_check.check(wanted)
    if json_out:
        dump_json({"clouds": [r.as_dict() for r in res.values()],
                   "enabled": [c for c, r in res.items() if r.enabled]})
    else:
        typer.echo(cloud_check.summary(res))
    if not any(r.enabled for r in res.values()):
        if not json_out:
            typer.echo("rayctl: error: no cloud has usable credentials; `--target cloud` cannot launch", err=True)
        raise typer.Exit(EXIT_INPUT)


def clusters(
    all_: bool = typer.Option(False, "--all", help="Include clusters already torn down."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List the cloud clusters and managed jobs rayctl created (its registry)."""
    from ..ledger import Ledger
    from ..providers import cloud_registry

    with Ledger() as led:
        rows = cloud_registry.all_rows(led, live_only=not all_)
    if json_out:
        dump_json({"clusters": [{k: v for k, v in r.items() if k != "candidates"} for r in rows]})
        return
    if not rows:
        typer.echo("no cloud clusters" + ("" if all_ else " that may still be running (--all lists every one)"))
        return
    from rich.table import Table

    t = Table(box=None, header_style="bold")
    for col in ("name", "run", "mode", "job", "where", "state", "since"):
        t.add_column(col)
    for r in rows:
        where = "/".join(x for x in (r.get("cloud"), r.get("region"), r.get("zone")) if x) or "-"
        t.add_row(r["name"], r.get("run_id") or "-", r["mode"], str(r.get("job_id") or "-"),
                  where + (f" {r['instance_type']}" if r.get("instance_type") else ""), r["state"], r["created_at"])
    console().print(t)


def down(
    all_: bool = typer.Option(False, "--all", help="Tear down every cluster rayctl created that may be live."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Tear down every cloud cluster rayctl created (same as `rayctl down --all` for the cloud)."""
    if not all_:
        raise InputError("rayctl cloud down: pass --all (to stop one run: `rayctl stop RUN`)")
    from ..ledger import Ledger
    from ..providers import skypilot

    with Ledger() as led:
        res = skypilot.down_all(led)
    if json_out:
        dump_json({"clusters": res})
    else:
        if not res:
            typer.echo("no cloud clusters to tear down")
        for r in res:
            typer.echo(f"{r['name']} ({r['mode']}, run {r['run_id']}): {r['result']}")
    if any(r["result"] != "down" for r in res):
        raise typer.Exit(1)
