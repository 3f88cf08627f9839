"""`rayctl cost report` and `rayctl cost compare`: parse, call `rayctl.cost`, render."""

from __future__ import annotations

from typing import List, Optional

import typer

from .render import CATALOG_HELP, console, dump_json, money, warn


def register(app: typer.Typer) -> None:
    cost_app = typer.Typer(help="What runs cost, and cost per token: self-hosted vs managed APIs.",
                           no_args_is_help=True)
    cost_app.command("report")(report)
    cost_app.command("compare")(compare_cmd)
    app.add_typer(cost_app, name="cost")


# ---------------------------------------------------------------- report

def report(
    since: Optional[str] = typer.Option(None, "--since", help="Runs started at or after: YYYY-MM-DD, an ISO 8601 "
                                        "time (UTC unless it names a zone), or an age such as 7d, 12h."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Only runs of this recipe name."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document: every run's accounting and totals."),
) -> None:
    """List recorded runs with what each cost (billed segments, spot/on-demand, recoveries) and totals."""
    from ..cost import accounting
    from ..ledger import Ledger

    since_dt = accounting.parse_since(since) if since is not None else None
    with Ledger() as led:
        from ..runs.reconcile import reconcile

        reconcile(led)  # a run whose launch was killed gets its outcome before it is costed
        doc = accounting.report(led, since=since_dt, recipe=recipe)
    if json_out:
        dump_json(doc)
        return
    _print_report(doc)


def _print_report(doc: dict) -> None:
    from rich.table import Table

    con = console()
    runs = doc["runs"]
    f = doc["filters"]
    scope = ", ".join(x for x in (f"since {f['since']}" if f["since"] else "", f"recipe {f['recipe']}"
                                  if f["recipe"] else "") if x) or "all runs"
    if not runs:
        _say(con, f"no runs in {doc['ledger']} ({scope})")
        return
    t = Table(box=None, header_style="bold", pad_edge=False)
    right = ("node-h", "recov", "cost", "tokens", "rows", "tok/$")
    for col in ("run", "recipe", "kind", "status", "started (UTC)", "where", "mode", *right):
        t.add_column(col, justify="right" if col in right else "left", no_wrap=col in ("run", "cost"),
                     overflow="fold")
    for r in runs:
        modes = "+".join(sorted(r["by_mode"])) or "-"
        where = "/".join(x for x in (r["cloud"], r["region"]) if x) or r["target"]
        t.add_row(r["id"], r["recipe"], r["kind"], r["status"], r["started_at"][:16].replace("T", " "),
                  where, modes, f"{r['billed_node_hours']:.3f}", str(r["recoveries"]),
                  money(r["cost_usd"]) + ("*" if any(s["open"] for s in r["segments"]) else ""),
                  _int(r["tokens"]), _int(r["rows"]), _int(r["tokens_per_usd"]))
    con.print(t)
    tot = doc["totals"]
    by_mode = "; ".join(f"{m} {money(v['cost_usd'], 2)} over {v['node_hours']:.2f} node-h"
                        for m, v in sorted(tot["by_mode"].items()) if v["cost_usd"] > 0)
    _say(con, f"{tot['runs']} run(s) ({scope}): cost {money(tot['cost_usd'], 2)}"
              + (f" ({by_mode})" if by_mode else "")
              + f", {tot['recoveries']} recover{'y' if tot['recoveries'] == 1 else 'ies'}, "
              f"tokens {_int(tot['tokens'])}, rows {_int(tot['rows'])}, tokens per $ {_int(tot['tokens_per_usd'])}"
              + (" (over runs with a cost)" if tot["tokens_per_usd"] else ""))
    if any(s["open"] for r in runs for s in r["segments"]):
        _say(con, "* still running: cost so far")
    if any(r["target"] == "local" and r["tokens"] for r in runs):
        _say(con, "local runs cost $0/h; `rayctl cost compare --run RUN` prices their measured throughput at "
                  "cloud GPU offers")


def _say(con, text: str) -> None:
    """One logical line: never broken by hard line breaks (pipes and logs keep it whole)."""
    con.print(text, soft_wrap=True, markup=False, highlight=False)


def _int(x) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) < 1e15 else f"{x:.3g}"  # never a 300-digit number


# ---------------------------------------------------------------- compare

def compare_cmd(
    model: Optional[str] = typer.Option(None, "--model", help="Self-hosted model, for the reference throughputs "
                                        "(default llama-3.1-8b)."),
    api: Optional[List[str]] = typer.Option(None, "--api", help="Managed APIs to compare, comma-separated or "
                                            "repeated: MODEL or PROVIDER:MODEL as genai-prices names them. Default: "
                                            "gpt-4o-mini,claude-3-5-haiku,gemini-1.5-flash,groq:llama-3.1-8b-instant."),
    input_tokens: Optional[int] = typer.Option(None, "--input-tokens", help="Input tokens per request (default "
                                               "1000, or the run's average per row with --run)."),
    output_tokens: Optional[int] = typer.Option(None, "--output-tokens", help="Output tokens per request "
                                                "(default 250, or the run's average per row with --run)."),
    run: Optional[List[str]] = typer.Option(None, "--run", help="Use this recorded run's measured throughput (output "
                                            "tokens / duration), priced at cloud offers for its recipe's GPUs. "
                                            "Repeat it to compare runs side by side (e.g. a self-hosted run and an "
                                            "API run of the same prompts): tokens/s, $ per 1M tokens, tokens per $."),
    throughput: Optional[float] = typer.Option(None, "--throughput", help="State a throughput: output tokens/s "
                                               "of the node at full load (needs --gpu)."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU offer to price, NAME:COUNT (default: the reference "
                                      "figures' GPU, A100-80GB:1; or the run's recipe)."),
    gpu_throughput: Optional[List[str]] = typer.Option(None, "--gpu-throughput", metavar="ACC=TOK_S",
                                                       help="State output tokens/s per GPU for an accelerator "
                                                       "(repeatable); priced on --gpu, else ACC:1. Wins over the "
                                                       "published figures."),
    utilization: str = typer.Option("0.7", "--utilization", help="Share of paid hours the GPUs are busy: 0.7 or 70%."),
    catalog: Optional[str] = typer.Option(None, "--catalog", help=CATALOG_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document (see docs/cost.md)."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write a bar chart of $ per 1M tokens: FILE.png or "
                                       "FILE.html (self-contained)."),
) -> None:
    """Self-hosted $ per 1M tokens on the cheapest spot and on-demand offers vs managed APIs, with break-even."""
    from ..cost import compare as compare_mod

    u = compare_mod.parse_utilization(utilization)
    compare_mod.check_counts(input_tokens, output_tokens, throughput)
    if plot is not None and run and len(run) > 1:
        from ..errors import InputError

        raise InputError("--plot charts one comparison; with several --run, compare them without --plot (or "
                         "plot each run alone)")
    if plot is not None:
        from ..cost import plot as plot_mod

        plot_mod.check_target(plot)  # fail on a bad extension before any work
    doc = compare_mod.compare(model=model, apis=api, input_tokens=input_tokens, output_tokens=output_tokens,
                              run_id=list(run or []) or None, throughput=throughput, gpu=gpu, utilization=u, catalog_flag=catalog,
                              gpu_throughput=gpu_throughput)
    _catalog_warnings(doc)
    if plot is not None:
        written = plot_mod.write(doc, plot)
        doc["plot"] = str(written)
    if json_out:
        dump_json(doc)
    elif "runs" in doc:
        _print_runs(doc)
    else:
        _print_compare(doc)


def _catalog_warnings(doc: dict) -> None:
    import datetime as dt

    from ..planning import catalog as catalog_mod

    as_of = doc["catalog"]["as_of"]
    if as_of:
        age = (dt.datetime.now(dt.timezone.utc).date() - dt.date.fromisoformat(as_of)).days
        if age > catalog_mod.STALE_DAYS:
            warn(f"price data from {doc['catalog']['source']} is {age} days old (as of {as_of}); "
                 "prices may have changed (refresh the catalog or pass --catalog)")
    for w in doc["catalog"]["warnings"]:
        warn(f"catalog: {w}")


def _volume(x) -> str:
    if x is None:
        return "never"
    if x >= 1e15:
        return f"{x:.3g}"
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:,.3g}{unit}"
    return f"{x:,.0f}"


def _print_runs(doc: dict) -> None:
    """`--run A --run B ...`: one row per run, side by side."""
    from rich.table import Table

    con = console()
    t = Table(box=None, header_style="bold", pad_edge=False, title="measured runs side by side", title_justify="left")
    for col in ("run", "recipe", "engine", "on", "status", "tokens", "seconds", "tok/s", "out tok/s",
                "$/1M tokens", "tokens/$", "$ from"):
        t.add_column(col, justify="right" if col in ("tokens", "seconds", "tok/s", "out tok/s", "$/1M tokens",
                                                     "tokens/$") else "left", overflow="fold")
    for r in doc["runs"]:
        basis = "API cost" if r.get("api") else ("billed" if r["cost_basis"].startswith("billed") else "priced")
        t.add_row(r["id"], r["recipe"], r.get("engine") or "-", r["priced_on"], r["status"], _int(r["tokens"]),
                  f"{r['duration_s']:,.1f}", f"{r['tokens_per_s']:,.1f}" if r.get("tokens_per_s") else "-",
                  f"{r['output_tokens_per_s']:,.1f}", money(r.get("usd_per_1m_tokens")), _int(r.get("tokens_per_usd")),
                  basis)
    con.print(t)
    for r in doc["runs"]:
        _say(con, f"{r['id']}: $ from {r['cost_basis']}; duration from {r['duration_source']}")
    _say(con, "tokens = input + output; tok/s over the run's measured duration")
    for n in doc["notes"]:
        _say(con, f"note: {n}")


def _print_compare(doc: dict) -> None:
    from rich.table import Table

    con = console()
    req = doc["request"]
    _say(con, f"{doc['model'] or 'model (not named: --model)'} self-hosted on {doc['gpu']} x {doc['nodes']} node(s) vs managed APIs — "
              f"request {req['input_tokens']:,} in + {req['output_tokens']:,} out tokens ({req['source']}), "
              f"utilisation {doc['utilization']:.0%}")
    _say(con, f"GPU prices: catalog {doc['catalog']['source']} (as of {doc['catalog']['as_of'] or 'unknown'}); "
              f"API prices: genai-prices {doc['genai_prices']['version']}")
    if doc.get("run"):
        r = doc["run"]
        _say(con, f"run {r['id']} ({r['kind']}, target {r['target']}, {r['status']}): "
                  f"{_int(r['output_tokens'])} output tokens in {r['duration_s']:,.1f} s = "
                  f"{r['output_tokens_per_s']:,.1f} output tok/s measured")
    t = Table(box=None, header_style="bold", pad_edge=False, title="self-hosted", title_justify="left")
    for col in ("throughput", "source", "mode", "offer", "$/h", "out tok/s", "$/1M tokens", "tokens/$", "$/month 24x7"):
        t.add_column(col, justify="right" if col[0] in "$ot" and col not in ("throughput",) else "left")
    for r in doc["self_hosted"]:
        o = r.get("offer")
        offer = ("/".join(x for x in (o["cloud"], o["region"], o["zone"]) if x) + " " + o["instance_type"]
                 if o else "billed (ledger)")
        t.add_row(r["throughput"], r["kind"], r["mode"], offer, money(r["hourly_usd"]),
                  f"{r['output_tokens_per_s']:,.1f}", money(r["usd_per_1m_tokens"]), _int(r["tokens_per_usd"]),
                  money(r.get("monthly_usd"), 2) if r.get("monthly_usd") is not None else "-")
    con.print(t)
    rows = [r for r in doc["self_hosted"] if r["kind"] != "actual"]
    primary = rows[0]["throughput"] if rows else None
    prim = [r for r in rows if r["throughput"] == primary]
    a = Table(box=None, header_style="bold", pad_edge=False, title="managed APIs (genai-prices)",
              title_justify="left")
    for col in ("API", "provider", "model", "$/1M in", "$/1M out", "$/1M tokens", "tokens/$"):
        a.add_column(col, justify="right" if col.startswith("$") or col == "tokens/$" else "left")
    for r in prim:
        a.add_column(f"break-even vs {r['throughput']} {r['mode']}", justify="right")
    be = {(b["self_hosted"], b["api"]): b for b in doc["break_even"]}
    for p in doc["apis"]:
        cells = [p["name"], p["provider_id"], p["model_id"], money(p["input_usd_per_1m"]),
                 money(p["output_usd_per_1m"]), money(p["usd_per_1m_tokens"]), _int(p["tokens_per_usd"])]
        for r in prim:
            b = be[(f"{r['throughput']} {r['mode']}", p["name"])]
            cells.append(f"{_volume(b['monthly_tokens'])} tok/mo" if b["self_hosted_cheaper_above"] else "never")
        a.add_row(*cells)
    con.print(a)
    _say(con, "break-even: monthly tokens above which one self-hosted cluster kept up 24x7 costs less than the API "
              "(\"never\": the API is cheaper even with the cluster busy at the stated utilisation)")
    for n in doc["notes"]:
        _say(con, f"note: {n}")
    if doc.get("plot"):
        _say(con, f"chart written to {doc['plot']}")
