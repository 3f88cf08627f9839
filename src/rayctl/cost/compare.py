"""Self-hosting vs managed APIs: $ per 1M tokens, tokens per $, break-even volume.

Units and formulas (docs/cost.md has a worked example):

- A request is `I` input + `O` output tokens (`--input-tokens/--output-tokens`; for
  `--run`, the run's own average per row). "Tokens" always means I + O.
- A throughput `T` is generated (output) tokens per second of the whole cluster at
  full load, with the prompts processed within that time (as they were when it was
  measured). Sources: a measured run (`--run`: output_tokens / duration), a stated
  figure (`--throughput`), or the shipped reference figures (`pricing/throughputs.csv`,
  published, not measured; scaled linearly with the GPU count, one replica per GPU).
- Utilisation `u` (default 0.7) is the share of paid hours the cluster works at T.
- Self-hosted, on an offer at `P` $/h for the cluster (the planner's cheapest spot and
  cheapest on-demand offer for the GPU):
      usd_per_request     = P x O / (T x 3600 x u)
      usd_per_1m_tokens   = usd_per_request / (I + O) x 1e6
      tokens_per_usd      = (I + O) / usd_per_request
      monthly_usd         = P x 730                    (kept up all month)
      monthly_capacity    = T x 3600 x u x 730 x (I + O) / O   tokens
- Managed API: usd_per_request = genai_prices.calc_price(Usage(I, O), model).total_price,
  then the same per-1M-tokens and tokens-per-$ arithmetic.
- Break-even monthly volume (tokens/month) = monthly_usd / (API usd_per_request / (I + O)):
  above it (up to monthly_capacity, and beyond with more nodes) self-hosting is
  cheaper; when it exceeds monthly_capacity, self-hosting at this utilisation never is.
"""

from __future__ import annotations

import math

from ..errors import InputError
from . import baselines, clean
from ..planning.throughputs import Throughput
from .sources import (DEFAULT_INPUT_TOKENS, DEFAULT_OUTPUT_TOKENS, cheapest_offers, from_references, from_run,
                      from_stated, from_stated_per_gpu, parse_gpu)

HOURS_PER_MONTH = 730.0  # 24 x 365 / 12
DEFAULT_UTILIZATION = 0.7
MAX_TOKENS_PER_REQUEST = 10_000_000  # above the largest context windows: a larger figure is a typo


def parse_utilization(text: str | float) -> float:
    """0.7, or 70%; must be in (0, 1]."""
    s = str(text).strip()
    try:
        u = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
    except ValueError:
        raise InputError(f"--utilization '{text}' is not a number; write a fraction such as 0.7 or a "
                         "percentage such as 70%") from None
    if not math.isfinite(u) or u <= 0 or u > 1:
        hint = f" (did you mean {u / 100:g}, i.e. {u:g}%?)" if 1 < u <= 100 and not s.endswith("%") else ""
        raise InputError(f"--utilization must be more than 0 and at most 1 (a fraction of paid hours the GPUs "
                         f"are busy; 0.7 = 70%), got {text}{hint}")
    return u


def check_counts(input_tokens: int | None, output_tokens: int | None, throughput: float | None) -> None:
    if input_tokens is not None and not (0 <= input_tokens <= MAX_TOKENS_PER_REQUEST):
        raise InputError(f"--input-tokens must be 0 or more and at most {MAX_TOKENS_PER_REQUEST:,} "
                         f"(input tokens per request), got {input_tokens}")
    if output_tokens is not None and output_tokens > MAX_TOKENS_PER_REQUEST:
        raise InputError(f"--output-tokens must be at most {MAX_TOKENS_PER_REQUEST:,} (output tokens per "
                         f"request), got {output_tokens}")
    if output_tokens is not None and output_tokens < 1:
        raise InputError(f"--output-tokens must be 1 or more (output tokens per request; self-hosted cost "
                         f"follows generated tokens), got {output_tokens}")
    from ..planning.throughputs import MAX_TOKENS_PER_S

    if throughput is not None and not (0 < throughput <= MAX_TOKENS_PER_S):  # also refuses nan and inf
        raise InputError(f"--throughput must be a positive, finite number of output tokens per second of one node "
                         f"(at most {MAX_TOKENS_PER_S:,.0f}), got {throughput:g}")

# ---------------------------------------------------------------- the comparison

def self_hosted_row(tp: Throughput, mode: str, cand, utilization: float, i_tok: int, o_tok: int) -> dict:
    hourly = cand.hourly_usd
    out_per_hour = tp.output_tokens_per_s * 3600.0 * utilization
    usd_req = hourly * o_tok / out_per_hour
    tokens = i_tok + o_tok
    return {
        "throughput": tp.label, "kind": tp.kind, "mode": mode,
        "offer": {**cand.as_dict(), "label": cand.label},
        "hourly_usd": hourly, "output_tokens_per_s": tp.output_tokens_per_s,
        "output_tokens_per_hour_at_utilization": out_per_hour,
        "usd_per_request": usd_req,
        "usd_per_1m_tokens": usd_req / tokens * 1e6,
        "usd_per_1m_output_tokens": hourly / out_per_hour * 1e6,
        "tokens_per_usd": tokens / usd_req if usd_req > 0 else None,
        "monthly_usd": hourly * HOURS_PER_MONTH,
        "monthly_capacity_tokens": out_per_hour * HOURS_PER_MONTH * tokens / o_tok,
    }


def break_even(row: dict, api: baselines.ApiPrice) -> dict:
    tokens = api.tokens
    out = {"self_hosted": f"{row['throughput']} {row['mode']}", "api": api.name,
           "monthly_tokens": None, "monthly_requests": None, "self_hosted_cheaper_above": False}
    if api.total_usd <= 0:
        out["why"] = "the API is free at this mix"
        return out
    volume = row["monthly_usd"] / (api.total_usd / tokens)
    out["monthly_tokens"] = volume
    out["monthly_requests"] = volume / tokens
    if volume <= row["monthly_capacity_tokens"] * (1 + 1e-12):
        out["self_hosted_cheaper_above"] = True
    else:
        out["why"] = (f"above the {row['monthly_capacity_tokens']:.4g} tokens/month one cluster serves at this "
                      "utilisation: self-hosting is never cheaper")
    return out


def compare(*, model: str | None = None, apis: list[str] | None = None, input_tokens: int | None = None,
            output_tokens: int | None = None, run_id: str | list[str] | None = None, throughput: float | None = None,
            gpu: str | None = None, utilization: float = DEFAULT_UTILIZATION, catalog_flag: str | None = None,
            ledger=None, gpu_throughput: list[str] | None = None) -> dict:
    """The whole comparison as one JSON-ready document (docs/cost.md lists its fields).
    `run_id`: one run (its `run` object), or a list: two or more give the side-by-side
    document (`runs`, see side_by_side.py)."""
    from ..planning import catalog as catalog_mod

    check_counts(input_tokens, output_tokens, throughput)
    run_ids = [run_id] if isinstance(run_id, str) else list(run_id or [])
    run_id = run_ids[0] if len(run_ids) == 1 else None
    if len(run_ids) > 1 and (throughput is not None or gpu_throughput):
        raise InputError("--run measures the throughput of each run; --throughput and --gpu-throughput state one: "
                         "pass one or the other")
    if run_id is not None and throughput is not None:
        raise InputError("--run and --throughput both give the throughput; pass one of them")
    api_names = _api_list(apis)
    cat = catalog_mod.load(catalog_flag)
    if not cat.offers:
        raise InputError(f"catalog {cat.source} holds no GPU offers to price self-hosting with; pass --catalog DIR "
                         "(SkyPilot's <cloud>/vms.csv layout) or set $RAYCTL_CATALOG")
    spec = parse_gpu(gpu, cat) if gpu else None
    if len(run_ids) > 1:
        from .side_by_side import compare_runs

        return compare_runs(run_ids, model=model, spec=spec, utilization=utilization, cat=cat, ledger=ledger,
                            input_tokens=input_tokens, output_tokens=output_tokens,
                            catalog_doc={"source": cat.source, "as_of": cat.as_of, "warnings": list(cat.warnings)},
                            genai_version=baselines.library_version(), price_row=self_hosted_row)
    from ..planning import throughputs as tp_mod

    stated = tp_mod.parse_stated(gpu_throughput)
    if stated and (run_id is not None or throughput is not None):
        raise InputError("--gpu-throughput states the throughput, as --run and --throughput do; pass one of them")
    if run_id is not None:
        src = from_run(run_id, spec, model, ledger)
    elif throughput is not None:
        src = from_stated(throughput, spec, gpu, model)
    elif stated:
        src = from_stated_per_gpu(stated, spec, gpu, model)
    else:
        src = from_references(model, spec, gpu, cat, ledger_path=getattr(ledger, "path", None))

    i_tok = input_tokens if input_tokens is not None else src.mix[0]
    o_tok = output_tokens if output_tokens is not None else src.mix[1]
    mix_source = src.mix_source
    if input_tokens is not None or output_tokens is not None:
        mix_source = "flags" if mix_source == "default" else f"flags, else {mix_source}"

    notes = list(src.notes)
    offers = cheapest_offers(src.recipe, cat)
    for mode, other in (("spot", "on-demand"), ("on-demand", "spot")):
        if offers[mode] is None:
            notes.append(f"No {mode} offer in the catalog for this GPU: {other} only.")
    rows = [self_hosted_row(tp, mode, cand, utilization, i_tok, o_tok)
            for tp in src.throughputs for mode, cand in offers.items() if cand is not None]
    api_prices = [baselines.price(a, i_tok, o_tok) for a in api_names]
    bes = [break_even(r, a) for r in rows for a in api_prices]
    if src.actual is not None:
        rows.append(src.actual)
    return clean({
        "model": model or src.throughputs[0].model or None,
        "request": {"input_tokens": i_tok, "output_tokens": o_tok, "source": mix_source},
        "utilization": utilization,
        "hours_per_month": HOURS_PER_MONTH,
        "gpu": ", ".join(str(s) for s in src.recipe.resources.accelerators),
        "nodes": src.recipe.resources.nodes,
        "catalog": {"source": cat.source, "as_of": cat.as_of, "warnings": list(cat.warnings)},
        "genai_prices": {"version": baselines.library_version()},
        "run": src.run,
        "throughputs": [t.as_dict() for t in src.throughputs],
        "self_hosted": rows,
        "apis": [a.as_dict() for a in api_prices],
        "break_even": bes,
        "notes": notes,
    })


def _api_list(apis: list[str] | None) -> list[str]:
    if not apis:
        return list(baselines.DEFAULT_APIS)
    out: list[str] = []
    for a in apis:
        for part in a.split(","):
            part = part.strip()
            if not part:
                raise InputError(f"--api '{a}': an empty name in the list; write e.g. --api gpt-4o-mini,claude-3-5-haiku")
            if part not in out:
                out.append(part)
    return out



# ---------------------------------------------------------------- the same comparison inside a plan

def figure_throughput(fig, cand, nodes: int, model: str | None) -> Throughput:
    """A throughputs.Figure on a planner candidate, as the cluster Throughput `self_hosted_row` prices."""
    return Throughput(model=fig.model or model or "", accelerator=cand.accelerator, count=cand.accelerator_count,
                      engine=fig.engine or "", label=fig.source, kind=fig.source, source=fig.basis,
                      output_tokens_per_s=fig.tokens_per_s(cand.accelerator_count, nodes))


def plan_baselines(plan, figures, apis: list[str], *, utilization: float = DEFAULT_UTILIZATION,
                   input_tokens: int = DEFAULT_INPUT_TOKENS, output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> dict:
    """The managed-API comparison for a plan's chosen offer (`plan --api`, recipe `compare_to`):
    the same rows and fields as `cost compare` (request, utilisation, $ per 1M tokens on both
    sides, monthly break-even)."""
    cand = plan.chosen
    fig = figures.figure(cand.accelerator)
    names = _api_list(apis)
    api_prices = [baselines.price(a, input_tokens, output_tokens) for a in names]
    notes = []
    rows = []
    if fig is None:
        notes.append(f"No throughput figure for {cand.accelerator}: self-hosted $ per token unknown; state one "
                     "with --gpu-throughput ACC=TOK_S.")
    else:
        tp = figure_throughput(fig, cand, plan.nodes, getattr(figures, "model", None))
        rows.append(self_hosted_row(tp, "spot" if cand.spot else "on-demand", cand, utilization,
                                    input_tokens, output_tokens))
    return clean({
        "request": {"input_tokens": input_tokens, "output_tokens": output_tokens, "source": "default"},
        "utilization": utilization,
        "hours_per_month": HOURS_PER_MONTH,
        "genai_prices": {"version": baselines.library_version()},
        "self_hosted": rows,
        "apis": [a.as_dict() for a in api_prices],
        "break_even": [break_even(r, a) for r in rows for a in api_prices],
        "notes": notes,
    })
