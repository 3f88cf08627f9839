"""`rayctl pricing refresh|status` and `rayctl cloud check|clusters|down` (the cloud target's CLI).

Thin: parse, call `rayctl.planning.refresh` / `rayctl.providers.*`, render. `launch --target
cloud`, `status`, `logs`, `stop` and `down --all` live in `cli/launch.py` and call
`rayctl.providers.skypilot.provider`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import EXIT_INPUT, InputError
from .render import console, dump_json, number_flag, warn

CLOUDS = ("aws", "gcp")


def register(app: typer.Typer) -> None:
    pricing = typer.Typer(help="The planner's price data: SkyPilot's hosted catalog (no credentials), "
                          "live AWS spot / GCP availability overlays.", no_args_is_help=True)
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
    cloud: Optional[str] = typer.Option(None, "--cloud", help="Only that cloud's live overlay (aws: spot prices "
                                        "per AZ; gcp: GPU availability and quota); needs its credentials."),
    source: Optional[str] = typer.Option(None, "--source", help="'skypilot': only download SkyPilot's hosted "
                                         "catalog (no credentials needed)."),
    region: Optional[List[str]] = typer.Option(None, "--region", help="Overlays: only these regions (repeatable)."),
    project: Optional[str] = typer.Option(None, "--project", help="GCP project (default: gcloud's)."),
    timeout: float = typer.Option(20.0, "--timeout", min=1.0, help="Seconds per catalog file / per network call."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Download SkyPilot's hosted GPU catalog (no credentials), then the live overlays the credentials allow.

    Bare: every cloud's `v8/<cloud>/vms.csv` into $RAYCTL_HOME/catalog/v8, then AWS spot prices per AZ and GCP GPU availability/quota for the clouds with usable credentials (others are skipped with a note). Exit 0 when every catalog file and every overlay tried succeeded; 1 otherwise (a failed file keeps its last good copy).
    """
    number_flag("--timeout", timeout, low=1.0, low_inclusive=True, high=3600.0, what="seconds per network call")
    if cloud is not None and cloud not in CLOUDS:
        raise InputError(f"--cloud {cloud}: must be one of {', '.join(CLOUDS)}")
    if source is not None and source != "skypilot":
        raise InputError(f"--source {source}: the only source is 'skypilot' (SkyPilot's hosted catalog)")
    if source and cloud:
        raise InputError("--source skypilot downloads the catalog only; --cloud refreshes one live overlay "
                         "only: pass one of them")
    from ..planning import price_cache, refresh as prices

    doc: dict = {}
    failed = False
    if cloud is None:
        from ..planning.refresh import hosted

        cat = hosted.refresh(timeout_s=timeout)
        doc["catalog"] = cat
        failed = not cat["ok"]
        if not json_out:
            ok = [c for c, r in cat["clouds"].items() if r["ok"]]
            rows = sum(r["rows"] for r in cat["clouds"].values() if r["ok"])
            typer.echo(f"catalog: {len(ok)} of {len(cat['clouds'])} cloud file(s) refreshed ({rows} GPU rows) "
                       f"from {cat['base_url']}/{hosted.SCHEMA} into {cat['dir']}")
            for c in cat["failed"]:
                warn(f"catalog: {c}/vms.csv failed: {cat['clouds'][c]['error']} (kept the last good copy"
                     + ("" if (Path(cat['dir']) / c / "vms.csv").is_file() else "; there is none") + ")")
        if source == "skypilot":
            if json_out:
                dump_json(doc)
            if failed:
                _exit_failed(cat["failed"], json_out)
            return
    wanted = [cloud] if cloud else list(CLOUDS)
    from ..planning import credentials as cloud_check

    checks = cloud_check.check(wanted)
    usable = [c for c in wanted if checks[c].enabled]
    if cloud and not usable:
        raise InputError("pricing refresh: no usable credentials for " + ", ".join(wanted) + ". Nothing changed; "
                         "the planner keeps its current data.\n" + cloud_check.summary(checks))
    report: dict = {}
    for c in wanted:
        if c not in usable:
            report[c] = {"ok": None, "skipped": f"no usable credentials ({checks[c].detail})"}
            continue
        if c == "aws":
            report[c] = prices.refresh_aws(regions=region or None, timeout_s=timeout)
        else:
            report[c] = prices.refresh_gcp(project=project, regions=region or None, timeout_s=timeout)
    overlay_failed = [c for c, r in report.items() if r.get("ok") is False]
    doc.update({"cache": str(price_cache.cache_dir()), "clouds": report})
    if json_out:
        dump_json(doc)
    else:
        for c, r in report.items():
            if r.get("skipped"):
                typer.echo(f"{c}: live overlay skipped: {r['skipped']}")
                continue
            if r.get("ok"):
                n = r.get("rows", r.get("accelerator_rows", 0))
                typer.echo(f"{c}: ok ({n} rows, {len(r.get('regions') or [])} region(s))")
            for scope, e in (r.get("errors") or {}).items():
                warn(f"{c}: {scope}: {e}")
        if usable:
            typer.echo(f"cache: {price_cache.cache_dir()}")
    if cloud:
        if not any(r.get("ok") for r in report.values()):
            raise typer.Exit(1)
        return
    if failed or overlay_failed:
        _exit_failed((doc["catalog"]["failed"] if failed else []) + [f"{c} overlay" for c in overlay_failed],
                     json_out)


def _exit_failed(what: list, json_out: bool) -> None:
    if not json_out:
        typer.echo(f"rayctl: error: pricing refresh failed for: {', '.join(what)}", err=True)
    raise typer.Exit(1)


def pricing_status(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Per cloud: which price data the planner uses (source), its rows and age; the live overlays' age."""
    from ..planning import catalog as catalog_mod, price_cache
    from ..planning.refresh import hosted

    st = _catalog_status(hosted)
    live = price_cache.status()
    if json_out:
        dump_json({**st, "live": live})
        return
    typer.echo(f"catalog in use: {st['source']} (as of {st['as_of'] or 'unknown'})")
    from rich.table import Table

    t = Table(box=None, header_style="bold")
    for col in ("cloud", "source", "rows", "age", "last refresh"):
        t.add_column(col)
    for c, m in st["clouds"].items():
        last = m.get("last_refresh") or {}
        note = ("never" if not last else ("ok " + str(last.get("fetched_at")) if not last.get("error")
                                          else f"failed {last.get('attempted_at')}: {last['error']}"))
        t.add_row(c, m["source"], str(m["rows"]), f"{m['age_days']} days" if m["age_days"] is not None else "-",
                  note)
    console().print(t)
    if any(m["source"] == catalog_mod.SHIPPED_LABEL for m in st["clouds"].values()):
        typer.echo("run `rayctl pricing refresh` (no credentials needed) for current prices")
    typer.echo(f"live overlays ({live['dir']}):" + ("" if live["clouds"] else " none; `rayctl pricing refresh` "
                                                       "adds them for clouds with credentials"))
    for c, m in live["clouds"].items():
        age = m.get("age_hours")
        typer.echo(f"  {c}: fetched {m.get('fetched_at') or 'never'}"
                   + (f" ({age:g} h ago)" if age is not None else "")
                   + (f"; last error: {m['error']}" if m.get("error") else ""))


def _catalog_status(hosted) -> dict:
    import datetime as dt

    from ..planning import catalog as catalog_mod
    from ..planning.catalog_csv import declared_date

    sel = catalog_mod.resolve(None)
    if sel.folder is not None:  # --catalog / $RAYCTL_CATALOG: one folder, dated by its newest file
        files = [(c, sel.folder / c / "vms.csv", sel.label, None) for c in sorted(os.listdir(sel.folder))]
        files = [f for f in files if f[1].is_file()]
    else:
        files = sel.files
    refreshed = any(src.startswith(catalog_mod.REFRESHED_PREFIX) for _, _, src, _ in files)
    meta = (hosted.read_meta().get("clouds") or {}) if refreshed else {}
    today = dt.datetime.now(dt.timezone.utc).date()
    clouds: dict = {}
    for c, f, src, declared in files:
        try:
            with open(f, newline="", encoding="utf-8") as fh:
                rows = max(0, sum(1 for _ in csv.reader(fh)) - 1)
        except (OSError, csv.Error, UnicodeDecodeError):
            rows = None
        date = declared or dt.datetime.fromtimestamp(f.stat().st_mtime, dt.timezone.utc).date().isoformat()
        clouds[c] = {"source": src, "file": str(f), "rows": rows, "date": date,
                     "age_days": (today - dt.date.fromisoformat(date)).days,
                     "last_refresh": meta.get(c) if src.startswith(catalog_mod.REFRESHED_PREFIX) else None}
    dates = [m["date"] for m in clouds.values()]
    if sel.folder is not None:
        as_of, folder = declared_date(sel.folder) or (max(dates) if dates else None), str(sel.folder)
    else:  # dated as `catalog.load` dates the per-cloud mix: by its oldest file
        as_of = min(dates) if dates else None
        folder = ", ".join(dict.fromkeys(str(f.parent.parent) for _, f, _, _ in files))
    return {"source": sel.label, "dir": folder, "as_of": as_of, "clouds": clouds}


def check(
    cloud: Optional[List[str]] = typer.Option(None, "--cloud", help="Clouds to check (default: aws, gcp)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Which clouds have usable credentials (seconds; does not start SkyPilot's API server)."""
    from ..planning import credentials as cloud_check

    wanted = list(cloud) if cloud else list(CLOUDS)
    known = ("aws", "gcp", *sorted(cloud_check.KEY_FILES))
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise InputError(f"--cloud {unknown[0]}: not a cloud rayctl checks; use one of {', '.join(known)}")
    res = cloud_check.check(wanted)
    if json_out:
        dump_json({"clouds": [r.as_dict() for r in res.values()],
                   "enabled": [c for c, r in res.items() if r.enabled]})
    else:
        typer.echo(cloud_check.summary(res))
    if not any(r.enabled for r in res.values()):
        if json_out:
            raise typer.Exit(EXIT_INPUT)  # the document says why
        raise InputError("no cloud has usable credentials; `--target cloud` cannot launch")


def clusters(
    all_: bool = typer.Option(False, "--all", help="Include clusters already torn down."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List the cloud clusters and managed jobs rayctl created (its registry)."""
    from ..ledger import Ledger
    from ..providers.skypilot import registry as cloud_registry

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
    from ..providers.skypilot import provider as skypilot

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
