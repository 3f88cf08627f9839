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

import dataclasses
import math

from ..errors import InputError
from . import baselines, clean
from .throughputs import Throughput

HOURS_PER_MONTH = 730.0  # 24 x 365 / 12
DEFAULT_MODEL = "llama-3.1-8b"
DEFAULT_INPUT_TOKENS = 1000
DEFAULT_OUTPUT_TOKENS = 250
DEFAULT_UTILIZATION = 0.7


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
    if input_tokens is not None and input_tokens < 0:
        raise InputError(f"--input-tokens must be 0 or more (input tokens per request), got {input_tokens}")
    if output_tokens is not None and output_tokens < 1:
        raise InputError(f"--output-tokens must be 1 or more (output tokens per request; self-hosted cost "
                         f"follows generated tokens), got {output_tokens}")
    if throughput is not None and (not math.isfinite(throughput) or throughput <= 0):
        raise InputError(f"--throughput must be a positive number of output tokens per second, got {throughput}")


# ---------------------------------------------------------------- what hardware to price

def _parse_gpu(text: str, cat) -> "object":
    from ..accelerators import AcceleratorSpec, parse_spec

    try:
        return parse_spec(text)
    except ValueError as e:
        name, _, count = text.partition(":")
        canon = cat.accelerator_names().get(name.strip().lower()) if cat is not None else None
        if canon and (not count or count.strip().isdigit() and int(count) >= 1):
            return AcceleratorSpec(canon, int(count) if count else 1)
        raise InputError(f"--gpu {text}: {e}") from None


def _synthetic_recipe(specs: tuple, label: str, nodes: int = 1):
    from ..recipe import Budget, Recipe, Resources, Teardown

    return Recipe(name="cost-compare", kind="batch-infer",
                  resources=Resources(accelerators=tuple(specs), nodes=nodes, spot="auto"),
                  budget=Budget(), target="cloud", teardown=Teardown(after="job"), schedule=None,
                  workload={}, path=label)


def cheapest_offers(recipe, cat) -> dict:
    """{'spot': Candidate|None, 'on-demand': Candidate|None} from the planner, ranking both modes."""
    from .. import planner

    r = dataclasses.replace(recipe, resources=dataclasses.replace(recipe.resources, spot="auto"),
                            budget=dataclasses.replace(recipe.budget, max_usd=None))
    plan = planner.plan(r, cat)
    out = {"spot": None, "on-demand": None}
    for c in plan.candidates:
        key = "spot" if c.spot else "on-demand"
        if out[key] is None:
            out[key] = c
    return out


# ---------------------------------------------------------------- measured runs

def measured(run: dict) -> dict:
    """Throughput and request mix of a recorded run; InputError when it has none."""
    rid = run["id"]
    out_tok = run.get("output_tokens")
    if not out_tok or out_tok <= 0:
        raise InputError(f"--run {rid}: the run recorded no output tokens (kind {run['kind']}, status "
                         f"{run['status']}); a throughput needs a workload that reports output_tokens "
                         "(batch-infer or serve). State one with --throughput TOK_S instead.")
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    dur, dsrc = None, None
    m_dur = metrics.get("duration_s")
    if isinstance(m_dur, (int, float)) and not isinstance(m_dur, bool) and m_dur > 0:
        dur, dsrc = float(m_dur), "metrics.duration_s (reported by the workload)"
    elif run.get("duration_s"):
        dur, dsrc = float(run["duration_s"]), "runs.duration_s (whole run, start to end, wall clock)"
    if not dur or dur <= 0:
        raise InputError(f"--run {rid}: the run has no duration yet (status {run['status']}); wait for it to "
                         "finish, or state a throughput with --throughput TOK_S.")
    rows = run.get("rows") or 0
    in_tok = run.get("input_tokens") or 0
    mix = None
    if rows > 0:
        mix = (round(in_tok / rows), max(1, round(out_tok / rows)))
    return {"output_tokens_per_s": out_tok / dur, "duration_s": dur, "duration_source": dsrc,
            "rows": run.get("rows"), "input_tokens": run.get("input_tokens"), "output_tokens": out_tok,
            "mix": mix}


def _run_recipe(run: dict, notes: list[str]):
    """The recipe a run was launched from, or None (with why) when it cannot be read.

    Only `resources` matter here: when the whole recipe no longer validates (edited since,
    or a stricter workload check), its resources alone are used, with a note.
    """
    from .. import recipe as recipe_mod
    from ..errors import RecipeError

    p = run.get("recipe_path")
    if not p:
        return None, "the ledger records no recipe path"
    try:
        rec = recipe_mod.load(p)
    except RecipeError as e:
        first = e.problems[0].message if e.problems else str(e)
        rec = _resources_only(p)
        if rec is None:
            return None, f"its recipe {p} cannot be read ({first})"
        notes.append(f"Recipe {p} does not validate now ({first}); only its resources were used.")
    if run.get("recipe_sha256") and rec.sha256 and rec.sha256 != run["recipe_sha256"]:
        notes.append(f"Recipe {p} changed since run {run['id']}; its current resources were used.")
    return rec, None


def _resources_only(path: str):
    from ..recipe.model import build
    from ..recipe.yamlsafe import Fail, load as load_yaml

    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
        doc = load_yaml(data).value
        res = doc.get("resources") if isinstance(doc, dict) else None
        if not isinstance(res, dict):
            return None
        return build({"name": str(doc.get("name") or "recipe"), "kind": str(doc.get("kind") or "batch-infer"),
                      "resources": res}, path, data)
    except (OSError, Fail, ValueError, TypeError, AttributeError):
        return None


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
            output_tokens: int | None = None, run_id: str | None = None, throughput: float | None = None,
            gpu: str | None = None, utilization: float = DEFAULT_UTILIZATION, catalog_flag: str | None = None,
            ledger=None) -> dict:
    from .. import catalog as catalog_mod
    from . import throughputs as tp_mod

    check_counts(input_tokens, output_tokens, throughput)
    if run_id is not None and throughput is not None:
        raise InputError("--run and --throughput both give the throughput; pass one of them")
    notes: list[str] = []
    run_doc = None
    run_row = None
    if run_id is not None:
        from ..ledger import Ledger

        led = ledger or Ledger()
        try:
            run_row = led.get(run_id)
        except KeyError:
            raise InputError(_unknown_run(led, run_id)) from None

    cat = catalog_mod.load(catalog_flag)
    if not cat.offers:
        raise InputError(f"catalog {cat.source} holds no GPU offers to price self-hosting with; pass --catalog DIR "
                         "(SkyPilot's <cloud>/vms.csv layout) or set $RAYCTL_CATALOG")
    spec = _parse_gpu(gpu, cat) if gpu else None

    # ---- throughputs and the hardware they are priced on
    tps: list[Throughput] = []
    recipe = None
    mix_default = (DEFAULT_INPUT_TOKENS, DEFAULT_OUTPUT_TOKENS)
    mix_source = "default"
    if run_row is not None:
        meas = measured(run_row)
        if meas["mix"]:
            mix_default, mix_source = meas["mix"], f"average per row of run {run_row['id']}"
        rec, why = _run_recipe(run_row, notes)
        if spec is not None:
            recipe = _synthetic_recipe((spec,), f"--gpu {gpu}", nodes=int(run_row.get("nodes") or 1))
            hw = str(spec)
        elif rec is not None and rec.resources.accelerators:
            recipe = rec
            hw = ", ".join(str(s) for s in rec.resources.accelerators)
        elif run_row.get("accelerator"):
            from ..accelerators import AcceleratorSpec

            s = AcceleratorSpec(run_row["accelerator"], int(run_row.get("accelerator_count") or 1))
            recipe = _synthetic_recipe((s,), f"run {run_row['id']}", nodes=int(run_row.get("nodes") or 1))
            hw = str(s)
        else:
            reason = why or f"its recipe {run_row.get('recipe_path')} names no resources.accelerators"
            raise InputError(f"--run {run_row['id']}: no GPU to price its throughput on: {reason}. "
                             "Pass --gpu NAME:COUNT (e.g. --gpu A100-80GB:1).")
        run_model = model or _run_model(run_row, rec) or f"the model of run {run_row['id']}"
        tps.append(Throughput(model=run_model, accelerator=hw, count=0,
                              engine="measured", label="measured", output_tokens_per_s=meas["output_tokens_per_s"],
                              kind="measured", source=f"rayctl ledger run {run_row['id']}"))
        nodes = recipe.resources.nodes
        where = run_row["target"]
        run_doc = {"id": run_row["id"], "recipe": run_row["recipe"], "kind": run_row["kind"],
                   "target": where, "status": run_row["status"], "hourly_usd": run_row.get("hourly_usd"),
                   "cost_usd": run_row.get("cost_usd"), **{k: v for k, v in meas.items() if k != "mix"},
                   "priced_on": hw, "nodes": nodes}
        if not run_row.get("hourly_usd") and not run_row.get("cost_usd"):
            notes.append(f"Run {run_row['id']} ran on target '{where}' at $0/h, so it has no tokens per dollar of "
                         f"its own. Its measured throughput ({meas['output_tokens_per_s']:.4g} output tok/s) is "
                         f"priced at the planner's cheapest cloud offers for {hw} x {nodes} node(s): what that "
                         "throughput would cost there. It was measured on the hardware the run used, not on "
                         "those GPUs; a GPU usually runs faster.")
        else:
            notes.append(f"Run {run_row['id']} ran on {where}; its measured throughput is priced at the planner's "
                         f"cheapest spot and on-demand offers for {hw}; its own billed cost is shown as 'actual'.")
        notes.append(f"Measured throughput = output tokens / {meas['duration_source']}.")
        if run_row["status"] != "succeeded":
            notes.append(f"Run {run_row['id']} ended '{run_row['status']}': its throughput covers the part that ran.")
    elif throughput is not None:
        if spec is None:
            raise InputError("--throughput needs --gpu NAME:COUNT: the GPU offer the stated throughput runs on "
                             "(e.g. --gpu A100-80GB:1)")
        recipe = _synthetic_recipe((spec,), f"--gpu {gpu}")
        tps.append(Throughput(model=model or "", accelerator=spec.name, count=spec.count, engine="stated",
                              label="stated", output_tokens_per_s=float(throughput), kind="stated",
                              source="--throughput"))
    else:
        refs = tp_mod.for_model(model or DEFAULT_MODEL, tp_mod.load())
        if spec is None:
            first = refs[0]
            spec = _parse_gpu(f"{first.accelerator}:{first.count}", cat)
            gpu = str(spec)
        on_gpu = [r for r in refs if r.accelerator.lower() == spec.name.lower()]
        if not on_gpu:
            have = sorted({f"{r.accelerator}:{r.count}" for r in refs})
            raise InputError(f"--gpu {gpu}: no reference throughput for {refs[0].model} on {spec.name} "
                             f"(reference figures exist for {', '.join(have)}). State one with --throughput TOK_S, "
                             "or measure one with --run RUN.")
        for r in on_gpu:
            factor = spec.count / r.count
            tps.append(dataclasses.replace(r, count=spec.count, output_tokens_per_s=r.output_tokens_per_s * factor))
            if factor != 1:
                notes.append(f"{r.label}: published for {r.accelerator}:{r.count}, scaled x{factor:g} for "
                             f"{spec} assuming one replica per GPU (linear).")
        recipe = _synthetic_recipe((spec,), f"--gpu {gpu}")
        notes.append("Reference throughputs are published figures (pricing/throughputs.csv), not measurements "
                     "by rayctl; measure your workload with --run RUN or state one with --throughput.")

    i_tok = input_tokens if input_tokens is not None else mix_default[0]
    o_tok = output_tokens if output_tokens is not None else mix_default[1]
    if input_tokens is not None or output_tokens is not None:
        mix_source = "flags" if mix_source == "default" else f"flags, else {mix_source}"

    offers = cheapest_offers(recipe, cat)
    if offers["spot"] is None:
        notes.append("No spot offer in the catalog for this GPU: on-demand only.")
    if offers["on-demand"] is None:
        notes.append("No on-demand offer in the catalog for this GPU: spot only.")

    rows = [self_hosted_row(tp, mode, cand, utilization, i_tok, o_tok)
            for tp in tps for mode, cand in offers.items() if cand is not None]
    if run_row is not None and (run_row.get("cost_usd") or 0) > 0:
        tokens = (run_row.get("input_tokens") or 0) + (run_row.get("output_tokens") or 0)
        cost = float(run_row["cost_usd"])
        rows.append({"throughput": tps[0].label, "kind": "actual", "mode": "spot" if run_row.get("spot") else
                     "on-demand", "offer": None, "hourly_usd": run_row.get("hourly_usd"),
                     "output_tokens_per_s": tps[0].output_tokens_per_s, "usd_total": cost,
                     "usd_per_1m_tokens": cost / tokens * 1e6 if tokens else None,
                     "tokens_per_usd": tokens / cost if tokens else None})

    api_prices = [baselines.price(a, i_tok, o_tok) for a in _api_list(apis)]
    bes = [break_even(r, a) for r in rows if r["kind"] != "actual" for a in api_prices]
    return clean({
        "model": model or tps[0].model or None,
        "request": {"input_tokens": i_tok, "output_tokens": o_tok, "source": mix_source},
        "utilization": utilization,
        "hours_per_month": HOURS_PER_MONTH,
        "gpu": ", ".join(str(s) for s in recipe.resources.accelerators),
        "nodes": recipe.resources.nodes,
        "catalog": {"source": cat.source, "as_of": cat.as_of, "warnings": list(cat.warnings)},
        "genai_prices": {"version": baselines.library_version()},
        "run": run_doc,
        "throughputs": [t.as_dict() for t in tps],
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


def _run_model(run: dict, recipe) -> str | None:
    """The model a run served: from its metrics, else its recipe's workload.model."""
    for src in (run.get("metrics"), getattr(recipe, "workload", None)):
        if isinstance(src, dict) and isinstance(src.get("model"), str):
            return src["model"]
    return None


def _unknown_run(led, run_id: str) -> str:
    recent = [r["id"] for r in led.runs(limit=5)]
    matches = [r["id"] for r in led.runs() if r["id"].startswith(run_id)] if run_id else []
    if len(matches) > 1:
        return (f"--run {run_id}: ambiguous, {len(matches)} runs start with it: {', '.join(matches[:5])}"
                + (" ..." if len(matches) > 5 else ""))
    hint = f" Recent runs: {', '.join(recent)}." if recent else " The ledger has no runs yet."
    return f"--run {run_id}: no such run in the ledger {led.path}.{hint} (`rayctl cost report` lists them.)"
