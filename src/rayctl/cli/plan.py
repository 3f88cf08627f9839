"""`rayctl validate`, `rayctl plan`, `rayctl gpus`, `rayctl recipe schema`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import EXIT_INPUT, InputError, ManyErrors, NoPlanError, RayctlError, RecipeError
from .render import CATALOG_HELP, console, dump_json, money, number_flag, warn


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("plan")(plan_cmd)
    app.command("gpus")(gpus)
    recipe_app = typer.Typer(help="Recipe helpers.", no_args_is_help=True)
    recipe_app.command("schema")(schema)
    app.add_typer(recipe_app, name="recipe")


def validate(
    files: List[Path] = typer.Argument(..., help="Recipe files to check.", show_default=False),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document with every file's result."),
) -> None:
    """Check recipe files; report every problem with file, line, column and field."""
    from .. import recipe as recipe_mod

    results = []
    errors: list[RecipeError] = []
    for f in files:
        try:
            r = recipe_mod.load(f)
            results.append({"file": str(f), "ok": True, "name": r.name, "kind": r.kind, "problems": []})
        except RecipeError as e:
            errors.append(e)
            results.append({"file": str(f), "ok": False, "problems": [p.as_dict() for p in e.problems]})
    bad = len(errors)
    if json_out:
        dump_json({"files": results, "valid": len(files) - bad, "invalid": bad})
    else:
        for r in results:
            if r["ok"]:
                typer.echo(f"ok    {r['file']}  ({r['kind']} '{r['name']}')")
        if bad:
            raise ManyErrors(errors, footer=f"{bad} of {len(files)} recipe(s) invalid")
    if bad:
        raise typer.Exit(EXIT_INPUT)

MAX_HOURS = 1_000_000.0  # ~114 years: more is a typo
MAX_BUDGET_USD = 1e12


def plan_cmd(
    recipes: List[Path] = typer.Argument(..., help="Recipe file(s) to plan.", show_default=False),
    json_out: bool = typer.Option(False, "--json", help="Print exactly one JSON document (stable bytes)."),
    catalog: Optional[str] = typer.Option(None, "--catalog", help=CATALOG_HELP),
    budget: Optional[float] = typer.Option(None, "--budget", min=0.0, help="Fail (exit 3) when the estimate exceeds USD."),
    hours: Optional[float] = typer.Option(None, "--hours", help="Hours to estimate for (default: budget.max_hours, else 1)."),
    top: Optional[int] = typer.Option(None, "--top", min=1, help="Keep only the first N candidates (default: all in JSON, 10 on screen)."),
    diff: Optional[Path] = typer.Option(None, "--diff", metavar="OLD.json", help="Compare with an earlier `plan --json` output: print what changed (offer, region, $/h, estimate) as a markdown table for a pull-request comment, or as JSON with --json. Exit codes stay those of the plan."),
    emit: Optional[str] = typer.Option(None, "--emit", help="Write the launch task instead of the table: 'skypilot' (a SkyPilot task YAML, candidates in plan order)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="With --emit: write to this file (default: stdout)."),
    preemption_aware: Optional[bool] = typer.Option(None, "--preemption-aware/--sticker", help="Rank spot offers by effective $/h from the ledger's preemption history, or by sticker price. Default: preemption-aware when the ledger has spot history."),
    objective: Optional[str] = typer.Option(None, "--objective", help="per-token: rank by $ per 1M output tokens; hourly: by cluster $/h. Default: resources.objective, else per-token for batch-infer and serve, hourly for train and tune."),
    gpu_throughput: Optional[List[str]] = typer.Option(None, "--gpu-throughput", metavar="ACC=TOK_S", help="State output tokens/s per GPU for an accelerator (repeatable); wins over measured, published and scaled figures."),
    api: Optional[List[str]] = typer.Option(None, "--api", help="Add the managed-API comparison (as `cost compare`) for the chosen offer: MODEL or PROVIDER:MODEL, comma-separated or repeated. Also: recipe key compare_to."),
) -> None:
    """Rank every feasible offer for each recipe, cheapest first, with the failover order.

    JSON (--json): one recipe gives its plan object, several give {"plans": [...]} in
    argument order; a recipe that cannot be planned gives {"file", "recipe", "error"}.
    Equal inputs give byte-identical output.
    """
    from ..planning import catalog as catalog_mod
    from ..planning import planner
    from .. import recipe as recipe_mod

    number_flag("--hours", hours, high=MAX_HOURS, what="hours to estimate for")
    number_flag("--budget", budget, high=MAX_BUDGET_USD, low_inclusive=True, what="USD")
    if objective is not None and objective not in planner.OBJECTIVES:
        raise InputError(f"--objective {objective}: must be one of {', '.join(planner.OBJECTIVES)}")
    stated = None
    if gpu_throughput:
        from ..planning.throughputs import parse_stated

        stated = parse_stated(gpu_throughput)
    old_plans = None
    if diff is not None:
        from ..planning.plandiff import load_plans

        old_plans = load_plans(diff)  # a bad OLD.json is an input error before any planning
    if emit is not None and emit != "skypilot":
        raise InputError(f"--emit {emit}: unknown format; the only one is 'skypilot'")
    if emit and (json_out or len(recipes) != 1):
        raise InputError("--emit skypilot takes exactly one recipe and no --json")
    if output is not None and not emit:
        raise InputError("--output/-o is for --emit skypilot")
    from ..planning import preemption

    hist = None
    if preemption_aware is not False:
        try:
            hist = preemption.history()
        except InputError as e:  # a damaged or unreadable ledger: it is left as it is
            if preemption_aware:
                raise
            warn(f"{e.message}. Ranking spot offers by sticker price.")
    aware = preemption_aware if preemption_aware is not None else bool(hist and hist.any)
    loaded: list = []  # per recipe: Recipe, or (path, error)
    for path in recipes:
        try:
            loaded.append(recipe_mod.load(path))
        except RecipeError as e:
            loaded.append((str(path), e))
    cat = None
    if any(not isinstance(r, tuple) for r in loaded):
        cat = catalog_mod.load(catalog)  # a bad catalog is one error for all recipes (exit 2)
        catalog_mod.warn_stale_once(cat, warn)
        for w in cat.warnings:
            warn(f"catalog: {w}")
    docs: list = []
    for r in loaded:
        if isinstance(r, tuple):
            docs.append(r)
            continue
        try:
            obj = planner.objective_for(r, objective)
            apis = list(api or ()) or list(r.compare_to)
            figures = None
            if obj == "per-token" or apis:
                from ..planning.throughputs import Resolver

                figures = Resolver(*planner.recipe_model(r), stated=stated)
            p = planner.plan(r, cat, budget_usd=budget, hours=hours, top=top,
                             rate_fn=hist.rate_fn(r.resources.nodes) if aware else None,
                             objective=obj, figures=figures)
            if apis:
                from ..cost.compare import plan_baselines

                p.baselines = plan_baselines(p, figures, apis)
            docs.append(p)
        except RayctlError as e:
            docs.append((r.path, e, r.name))
    if emit and not isinstance(docs[0], tuple):
        from ..providers.skypilot import task as skypilot_task

        text, notes = skypilot_task.emit(loaded[0], docs[0])
        for n in notes:
            warn(n)
        if output is None:
            sys.stdout.write(text)
        else:
            try:
                output.write_text(text, encoding="utf-8")
            except OSError as e:
                raise InputError(f"--output {output}: cannot write: {e.strerror}") from None
            sys.stderr.write(f"rayctl: wrote SkyPilot task for '{docs[0].recipe}' to {output}\n")
        return
    if json_out or old_plans is not None:
        out = [_error_doc(*d) if isinstance(d, tuple) else {**d.as_dict(), "file": r.path}
               for d, r in zip(docs, loaded)]
    if old_plans is not None:
        from ..planning import plandiff

        result = plandiff.diff(old_plans, out)
        if json_out:
            dump_json(result)
        else:
            sys.stdout.write(plandiff.markdown(result))
    elif json_out:
        dump_json(out[0] if len(out) == 1 else {"plans": out})
    else:
        for d in docs:
            if not isinstance(d, tuple):
                _print_plan(d, top or 10)
                per = "$ per 1M output tokens from " if d.objective == "per-token" else ""
                if aware:
                    console().print(f"ranking: {per}{d.ranking} $/h (preemption-aware: {hist.describe()})")
                elif hist is not None and any(c.spot for c in d.candidates):
                    console().print(f"ranking: {per}sticker $/h (no spot history in the ledger; "
                                    "--preemption-aware applies the prior)")
    failed = [d[1] for d in docs if isinstance(d, tuple)]
    if failed:
        raise ManyErrors(failed)


def _error_doc(path: str, e: RayctlError, name: str | None = None) -> dict:
    doc = {"file": path, "error": {"exit_code": e.exit_code, "message": e.message}}
    if name is not None:
        doc["recipe"] = name
    if isinstance(e, RecipeError):
        doc["error"]["problems"] = [p.as_dict() for p in e.problems]
    return doc


def _print_plan(p, top: int) -> None:
    from rich.table import Table

    con = console()
    c = p.chosen
    eff = p.ranking == "effective"
    con.print(f"[bold]{p.recipe}[/] ({p.kind}, {p.nodes} node{'s' if p.nodes != 1 else ''}, "
              f"pricing: {p.spot_mode}) — catalog {p.catalog_source}, as of {p.catalog_as_of or 'unknown'}")
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in ("#", "cloud", "region", "zone", "instance", "GPUs", "mode", "$/h node", "$/h cluster"):
        table.add_column(col, justify="right" if col in ("#", "$/h node", "$/h cluster") else "left")
    if eff:
        table.add_column("effective $/h", justify="right")
    per_token = p.objective == "per-token"
    if per_token:
        table.add_column("out tok/s", justify="right")
        table.add_column("source", justify="left")
        table.add_column("$/1M out tok", justify="right")
    for i, cand in enumerate(p.candidates[:top], 1):
        row = [str(i), cand.cloud, cand.region, cand.zone or "-", cand.instance_type,
               f"{cand.accelerator}:{cand.accelerator_count}", "spot" if cand.spot else "on-demand",
               money(cand.hourly_usd_per_node), money(cand.hourly_usd)]
        if eff:
            row.append(money(cand.effective_hourly_usd))
        if per_token:
            row += [f"{cand.output_tokens_per_s:,.0f}" if cand.output_tokens_per_s else "-",
                    cand.throughput_source + (f" ({cand.throughput_runs} runs)" if cand.throughput_runs else ""),
                    money(cand.usd_per_1m_output_tokens)]
        table.add_row(*row, style="bold green" if i == 1 else None)
    con.print(table)
    more = p.feasible - min(top, len(p.candidates))
    per_1m = (f" = {money(c.usd_per_1m_output_tokens)} per 1M output tokens at "
              f"{c.output_tokens_per_s:,.0f} out tok/s ({c.throughput_source})"
              if per_token and c.usd_per_1m_output_tokens is not None else "")
    con.print(f"chosen: {c.label} at {money(c.hourly_usd)}/h{per_1m}"
              f"{' (ranked by $ per 1M output tokens)' if per_token else ''}"
              f"{' (ranked by effective $/h, preemption-aware)' if eff and not per_token else ''}"
              f"{' (ranked by effective $ per 1M output tokens, preemption-aware)' if eff and per_token else ''}; "
              f"estimate {money(p.estimate_usd, 2)} for {p.hours:g} h"
              + (f" (budget {money(p.budget_usd, 2)})" if p.budget_usd is not None else "")
              + (f"; {more} more candidate(s) in the failover order (--top, --json)" if more > 0 else ""))
    if per_token:
        for name, f in sorted(p.figures.items()):
            if f is None:
                con.print(f"throughput {name}: none (ranked last; --gpu-throughput {name}=TOK_S)",
                          soft_wrap=True, markup=False, highlight=False)
                continue
            con.print(f"throughput {name}: {f.per_gpu:,.1f} out tok/s per GPU, {f.source}"
                      + (f" ({f.runs} runs)" if f.runs else "") + f": {f.basis}"
                      + (f" [{f.note}]" if f.note else ""), soft_wrap=True, markup=False, highlight=False)
    if p.baselines is not None:
        _print_baselines(p.baselines)


def _print_baselines(b: dict) -> None:
    con = console()
    req = b["request"]
    say = lambda t: con.print(t, soft_wrap=True, markup=False, highlight=False)  # noqa: E731
    say(f"vs managed APIs (genai-prices {b['genai_prices']['version']}), request {req['input_tokens']:,} in + "
        f"{req['output_tokens']:,} out tokens, utilisation {b['utilization']:.0%}:")
    for r in b["self_hosted"]:
        say(f"  self-hosted ({r['kind']}, {r['mode']}): {money(r['usd_per_1m_tokens'])} per 1M tokens, "
            f"{money(r['monthly_usd'], 2)}/month 24x7")
    be = {bk["api"]: bk for bk in b["break_even"]}
    for a in b["apis"]:
        x = be.get(a["name"])
        when = "-" if x is None else (f"self-hosting cheaper above {x['monthly_tokens']:,.3g} tokens/month"
                                      if x["self_hosted_cheaper_above"] else "self-hosting never cheaper")
        say(f"  {a['name']}: {money(a['usd_per_1m_tokens'])} per 1M tokens; {when}")
    for n in b["notes"]:
        say(f"  note: {n}")


def gpus(
    name: Optional[str] = typer.Argument(None, help="Accelerator name, e.g. H100 (default: a summary of all)."),
    spot: bool = typer.Option(False, "--spot", help="Rank by spot price and list only spot offers."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
    catalog: Optional[str] = typer.Option(None, "--catalog", help=CATALOG_HELP),
    count: Optional[int] = typer.Option(None, "--count", min=1, help="Only this many GPUs per node."),
) -> None:
    """List GPU offers offline: cheapest per (count, cloud, region), like `sky gpus list`."""
    from ..planning import catalog as catalog_mod

    cat = catalog_mod.load(catalog)
    catalog_mod.warn_stale_once(cat, warn)
    if name is None:
        rows = catalog_mod.summary(cat)
        if spot:  # only GPUs that some cloud offers as spot
            rows = [r for r in rows if r.get("min_spot_hourly_usd_per_gpu") is not None]
        if json_out:
            dump_json({"catalog": cat.doc(), "accelerators": rows})
            return
        from rich.table import Table

        t = Table(box=None, header_style="bold")
        for col in ("accelerator", "counts", "clouds", "cheapest $/GPU-h", "cheapest spot $/GPU-h"):
            t.add_column(col)
        for r in rows:
            t.add_row(r["accelerator"], ",".join(map(str, r["counts"])), ",".join(r["clouds"]),
                      money(r["min_hourly_usd_per_gpu"]), money(r["min_spot_hourly_usd_per_gpu"]))
        console().print(t)
        return
    names = cat.accelerator_names()
    canon = names.get(name.lower())
    if canon is None:
        from ..recipe.accelerators import suggest

        close = suggest(name, names.values())
        raise InputError(f"accelerator '{name}' is not in catalog {cat.source}"
                         + (f"; did you mean {', '.join(close)}?" if close else "")
                         + f" Available: {', '.join(sorted(names.values()))}")
    rows = catalog_mod.cheapest_per_region(cat, canon, spot=spot, count=count)
    if json_out:
        dump_json({"catalog": cat.doc(), "accelerator": canon,
                   "spot": spot, "offers": rows})
        return
    if not rows:
        what = f"{canon}" + (f":{count}" if count else "") + (" spot" if spot else "")
        raise NoPlanError(f"no {what} offers in catalog {cat.source}; see `rayctl gpus` for what it has")
    from rich.table import Table

    t = Table(box=None, header_style="bold")
    for col in ("GPUs", "cloud", "region", "zone", "instance", "vCPUs", "mem GiB", "$/h", "spot $/h"):
        t.add_column(col, justify="right" if "$" in col else "left")
    for r in rows:
        t.add_row(f"{r['accelerator']}:{r['accelerator_count']}", r["cloud"], r["region"], r["zone"] or "-",
                  r["instance_type"], _fmt(r["vcpus"]), _fmt(r["memory_gib"]), money(r["hourly_usd"]),
                  money(r["spot_hourly_usd"]))
    console().print(t)


def _fmt(x) -> str:
    if x is None:
        return "-"
    return str(int(x)) if float(x).is_integer() else str(x)


def schema() -> None:
    """Print the JSON Schema of recipes (for editors and CI)."""
    from ..recipe import SCHEMA

    dump_json(SCHEMA)
