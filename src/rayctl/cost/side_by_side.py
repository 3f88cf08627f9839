"""`rayctl cost compare --run A --run B ...`: recorded runs side by side.

Each run gets three figures, all from what the ledger measured:

- tokens/s = (input + output tokens) / duration, and output tokens/s (the same duration
  as a single `--run`: the workload's `metrics.duration_s`, else the run's wall clock);
- $ per 1M tokens and tokens per $, from the run's cost:
  * an API run (batch-infer `engine: http` against a managed API: `metrics.engine == "http"`
    and `metrics.api`): its recorded actual cost, `runs.cost_usd` (tokens x that API's
    prices from genai-prices, recorded by the run);
  * a self-hosted run that was billed (cloud): its billed cost (segments);
  * a self-hosted run at $0/h (local): its measured throughput priced at the planner's
    cheapest cloud offer for its GPUs (`compare.self_hosted_row`, at the utilisation), as
    a single `--run` prices it.

Tokens always means input + output. Each entry of `runs` is the single-run `run` object
plus these figures (`tokens_per_s`, `usd_per_1m_tokens`, `tokens_per_usd`, `cost_basis`,
`engine`, and `api` for an API run).
"""

from __future__ import annotations

from ..errors import InputError


def _tokens(run: dict) -> int:
    return int(run.get("input_tokens") or 0) + int(run.get("output_tokens") or 0)


def _money(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 else None


def _api_cost(run: dict) -> tuple[float | None, str]:
    """(the API run's actual cost, where it was read): runs.cost_usd, else metrics.api_cost_usd
    (a finished run's runs.cost_usd is its segments' $0 until the API cost is recorded)."""
    cost, reported = _money(run.get("cost_usd")), _money(run["metrics"].get("api_cost_usd"))
    if cost:
        return cost, "runs.cost_usd"
    if reported is not None:
        return reported, "metrics.api_cost_usd"
    return None, ""


def api_entry(run: dict) -> dict:
    """An API run's entry: measured tokens and duration, its recorded actual cost."""
    from . import measured

    m = measured.measure(run)
    api = dict(run["metrics"]["api"])
    tokens = _tokens(run)
    cost, where = _api_cost(run)
    if cost is None:
        raise InputError(f"--run {run['id']}: an API run (engine http, {api.get('provider')}:{api.get('model')}) "
                         "with no recorded cost (runs.cost_usd, metrics.api_cost_usd); it cannot be compared on $")
    entry = {"id": run["id"], "recipe": run["recipe"], "kind": run["kind"], "target": run["target"],
             "status": run["status"], "hourly_usd": None, "cost_usd": float(cost),
             "output_tokens_per_s": m.output_tokens_per_s, "duration_s": m.duration_s,
             "duration_source": m.duration_source, "rows": run.get("rows"),
             "input_tokens": run.get("input_tokens"), "output_tokens": run.get("output_tokens"),
             "priced_on": f"API {api.get('provider')}:{api.get('model')}", "nodes": run.get("nodes")}
    entry.update(engine="http", api=api, tokens=tokens, tokens_per_s=tokens / m.duration_s,
                 usd_per_1m_tokens=cost / tokens * 1e6 if tokens else None,
                 tokens_per_usd=tokens / cost if cost > 0 else None,
                 cost_basis=f"actual API cost recorded by the run ({where}; prices {api.get('source')})")
    return entry


def self_hosted_entry(src, rows: list, ledger_row: dict) -> dict:
    """A self-hosted run's entry: its billed cost, else its cheapest priced offer."""
    run = dict(src.run)
    tokens = _tokens(run)
    run["tokens"] = tokens
    run["tokens_per_s"] = tokens / run["duration_s"] if run.get("duration_s") else None
    m = ledger_row.get("metrics") if isinstance(ledger_row.get("metrics"), dict) else {}
    run["engine"] = m.get("engine")
    if src.actual is not None:
        a = src.actual
        run.update(usd_per_1m_tokens=a["usd_per_1m_tokens"], tokens_per_usd=a["tokens_per_usd"],
                   cost_basis=f"billed cost in the ledger ({a['mode']}, {a['billed_node_hours']:.4g} node-h)")
        return run
    priced = [r for r in rows if r.get("usd_per_1m_tokens") is not None]
    if not priced:
        raise InputError(f"--run {run['id']}: no cloud offer to price its measured throughput on "
                         f"({run['priced_on']}); pass --gpu NAME:COUNT")
    best = min(priced, key=lambda r: r["usd_per_1m_tokens"])
    o = best["offer"]
    run.update(usd_per_1m_tokens=best["usd_per_1m_tokens"], tokens_per_usd=best["tokens_per_usd"],
               cost_basis=f"measured throughput priced at the cheapest {best['mode']} offer for {run['priced_on']} "
                          f"({o['label']}, {best['hourly_usd']:.4g} $/h) at the utilisation",
               offers=rows)
    return run


def compare_runs(run_ids: list[str], *, model, spec, utilization: float, cat, ledger, input_tokens, output_tokens,
                 catalog_doc: dict, genai_version: str | None, price_row) -> dict:
    """The side-by-side document (docs/cost.md): `runs`, one entry per --run, in the given order.
    `price_row`: compare.self_hosted_row (passed in: compare.py calls this module)."""
    from ..ledger import Ledger
    from . import clean, measured
    from .sources import cheapest_offers, from_run

    led = ledger or Ledger()
    try:
        entries, notes, seen = [], [], set()
        for rid in run_ids:
            run = measured.get_run(led, rid)
            if run["id"] in seen:
                raise InputError(f"--run {rid}: run {run['id']} is given twice")
            seen.add(run["id"])
            if measured.is_api_run(run):
                entries.append(api_entry(run))
                continue
            src = from_run(run["id"], spec, model, led)
            i_tok = input_tokens if input_tokens is not None else src.mix[0]
            o_tok = output_tokens if output_tokens is not None else src.mix[1]
            offers = cheapest_offers(src.recipe, cat) if src.actual is None else {}
            rows = [price_row(tp, mode, cand, utilization, i_tok, o_tok)
                    for tp in src.throughputs for mode, cand in offers.items() if cand is not None]
            entries.append(self_hosted_entry(src, rows, run))
            notes.extend(f"{run['id']}: {n}" for n in src.notes if "'actual' row" not in n)
    finally:
        if ledger is None:
            led.close()
    return clean({
        "utilization": utilization,
        "catalog": catalog_doc,
        "genai_prices": {"version": genai_version},
        "runs": entries,
        "notes": notes,
    })
