"""Rank every feasible offer for a recipe: cheapest per output token, or per hour.

An offer is feasible when its accelerator name and per-node count match one of the
recipe's alternatives exactly, it has a price in the asked pricing mode, and it meets
every constraint (clouds, regions, cpus, memory, max $/h, budget). The ranked list is
the failover order: the provisioner tries the first candidate, then the next.

Ranking key, in order:
1. with `spot: auto`, every spot offer before every on-demand offer;
2. offers in `prefer_regions` priced within `prefer_within_pct` of the cheapest (by the
   key of step 3);
3. the objective: `hourly` -- cluster $/h (nodes x per-node price); `per-token` -- $ per
   1M output tokens = cluster $/h / (cluster output tokens/s x 3600) x 1e6, where the
   cluster's tokens/s = per-GPU figure x GPUs per node x nodes (`planning.throughputs`:
   stated, measured, published or scaled). Offers whose accelerator has no figure
   rank after every offer that has one, by $/h, with a warning;
4. ties broken by cloud, region, zone, instance type, accelerator: deterministic.

The objective defaults to `per-token` for batch-infer and serve, `hourly` for train and
tune (`objective_for`).

Optionally a `rate_fn(cloud, region, instance_type) -> interruptions/hour` makes spot
offers rank by effective $/h = price x (1 + rate x (restart + checkpoint/2) / 60)
(see `effective_price`); sticker prices are kept beside it.
"""

from __future__ import annotations

import gc
import math
from typing import Callable

from .offers import Catalog, Offer
from .objective import OBJECTIVES, attach_throughput, objective_for, recipe_model  # noqa: F401  (callers use planner.*)
from .plan_result import Candidate, Plan, make_candidate, plain_number  # noqa: F401
from ..errors import InputError, NoPlanError
from ..recipe import Recipe


def effective_price(price: float, rate_per_hour: float, restart_minutes: float, checkpoint_minutes: float) -> float:
    """Expected $/h of a spot run that loses (restart + half a checkpoint interval) per interruption."""
    return price * (1.0 + rate_per_hour * (restart_minutes + checkpoint_minutes / 2.0) / 60.0)


def plan(recipe: Recipe, catalog: Catalog, *, budget_usd: float | None = None, hours: float | None = None,
         top: int | None = None, rate_fn: Callable[[str, str, str], float] | None = None,
         objective: str = "hourly", figures=None) -> Plan:
    """Rank the catalog's offers for `recipe`; raise NoPlanError (exit 3) when none fits.

    With `objective="per-token"`, `figures` is a `planning.throughputs.Resolver` (or anything with
    `.figure(accelerator) -> Figure | None`, plus optional `.model`/`.engine`)."""
    # The ranking allocates one tuple per feasible offer and no reference cycles; the
    # cyclic GC would only re-walk them (a 2x slowdown at 1M offers), so pause it.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _plan(recipe, catalog, budget_usd, hours, top, rate_fn, objective, figures)
    finally:
        if was_enabled:
            gc.enable()


def _plan(recipe, catalog, budget_usd, hours, top, rate_fn, objective="hourly", figures=None) -> Plan:
    res = recipe.resources
    if not res.accelerators:
        raise InputError(f"{recipe.path}: field 'resources.accelerators' is required to plan: "
                         "rayctl plans GPU offers (e.g. accelerators: H100:8)")
    if hours is None:
        hours = recipe.budget.max_hours or 1.0
    if hours <= 0:
        raise InputError(f"--hours must be > 0, got {hours}")
    if budget_usd is None:
        budget_usd = recipe.budget.max_usd
    # NaN compares false with everything, so one would silently pass every filter and
    # scramble the ranking; inputs are checked where they are read, this is the backstop.
    for what, v in (("hours (--hours / budget.max_hours)", hours), ("budget (--budget / budget.max_usd)", budget_usd),
                    ("resources.max_hourly_usd", res.max_hourly_usd),
                    ("resources.restart_minutes", res.restart_minutes),
                    ("resources.checkpoint_minutes", res.checkpoint_minutes)):
        if isinstance(v, float) and not math.isfinite(v):
            raise InputError(f"{recipe.path}: {what} is {v}; it must be a finite number")
    nodes = res.nodes
    index = catalog.by_accelerator()

    matched: list[Offer] = []
    for spec in res.accelerators:
        matched.extend(index.get((spec.name.lower(), spec.count), ()))
    if not matched:
        raise NoPlanError(_no_match_message(recipe, catalog))

    clouds = set(res.clouds)
    regions = set(res.regions)
    excluded = set(res.exclude_regions)
    cpus, mem = res.cpus, res.memory
    modes = {"spot": (True,), "on-demand": (False,), "auto": (True, False)}[res.spot]
    cap = res.max_hourly_usd
    reasons = {"cloud": 0, "region": 0, "cpus/memory": 0, "price mode": 0, "max_hourly_usd": 0}

    # Filters run as list comprehensions, one constraint at a time: this is the hot path
    # for large catalogs (1M offers), and comprehensions are several times faster than
    # one loop with many branches.
    pool = matched
    if clouds:
        pool, n = [o for o in pool if o.cloud in clouds], len(pool)
        reasons["cloud"] = n - len(pool)
    if regions or excluded:
        pool, n = [o for o in pool if (not regions or o.region in regions) and o.region not in excluded], len(pool)
        reasons["region"] = n - len(pool)
    if cpus or mem:
        pool, n = [o for o in pool if (not cpus or cpus.admits(o.vcpus)) and (not mem or mem.admits(o.memory_gib))], len(pool)
        reasons["cpus/memory"] = n - len(pool)

    groups: list[list] = []  # per pricing mode, in failover order: [(effective, cluster, offer)]
    for spot in modes:
        # One pass builds the ranked rows (effective $/h, cluster $/h, offer); a cap or a spot
        # model filters/rewrites them after.
        if spot:
            rows = [(p * nodes, p * nodes, o) for o in pool if (p := o.spot_price) is not None]
        else:
            rows = [(p * nodes, p * nodes, o) for o in pool if (p := o.price) is not None]
        reasons["price mode"] += len(pool) - len(rows)
        if cap is not None:
            n = len(rows)
            rows = [r for r in rows if r[1] <= cap + 1e-9]
            reasons["max_hourly_usd"] += n - len(rows)
        if spot and rate_fn is not None:
            rs, cm = res.restart_minutes, res.checkpoint_minutes
            rows = [(effective_price(c, rate_fn(o.cloud, o.region, o.instance_type), rs, cm), c, o)
                    for _, c, o in rows]
            n = len(rows)
            rows = [r for r in rows if math.isfinite(r[0])]  # never rank a NaN/inf effective price
            reasons["price mode"] += n - len(rows)
        groups.append(rows)
    if not any(groups):
        raise NoPlanError(_filtered_message(recipe, reasons, len(matched), catalog))

    if budget_usd is not None:
        per_hour = budget_usd / hours + 1e-9
        within = [[r for r in g if r[1] <= per_hour] for g in groups]
        if not any(within):
            c_row, c_spot = min(((r, spot) for spot, g in zip(modes, groups) for r in g),
                                key=lambda rs: (rs[0][1], _tie(rs[0][2])))
            c = make_candidate(c_row, c_spot, nodes, rate_fn is not None, {})
            cost = round(c.hourly_usd * hours, 2)
            buys = budget_usd / c.hourly_usd
            raise NoPlanError(
                f"{recipe.path}: no offer fits the budget of ${budget_usd:,.2f} for {plain_number(hours)} h. "
                f"The cheapest feasible offer is {c.label} at ${c.hourly_usd:,.4f}/h for the cluster "
                f"= ${cost:,.2f} for {plain_number(hours)} h; ${budget_usd:,.2f} buys {buys:.2f} h of it. "
                f"Raise the budget to at least ${cost:,.2f}, or shorten budget.max_hours.")
        groups = within

    figs: dict = {}
    warnings = list(catalog.warnings)
    if objective == "per-token":
        if figures is None:
            from .throughputs import Resolver

            figures = Resolver(*recipe_model(recipe))
        groups, figs = attach_throughput(groups, figures, nodes)
        missing = sorted(n for n, f in figs.items() if f is None)
        if missing:
            warnings.append(f"no throughput figure for {', '.join(missing)} (none measured, published or "
                            "scalable by memory bandwidth): those offers rank after the others, by $/h; "
                            "state one with --gpu-throughput ACC=TOK_S")
    elif objective != "hourly":
        raise InputError(f"objective {objective}: must be one of {', '.join(OBJECTIVES)}")

    ranked: list[tuple] = []  # (spot, rows) per pricing mode, in failover order
    feasible = sum(len(g) for g in groups)
    kept = 0
    for spot, g in zip(modes, groups):
        g = _rank_per_token(g) if objective == "per-token" else _rank(g)
        if res.prefer_regions and g:
            g = _prefer(g, set(res.prefer_regions), res.prefer_within_pct)
        if top is not None:
            g = g[:max(0, top - kept)]
            kept += len(g)
        ranked.append((spot, g))
    ranking = "effective" if rate_fn is not None and any(s and g for s, g in ranked) else "sticker"
    return Plan(recipe=recipe.name, kind=recipe.kind, nodes=nodes, spot_mode=res.spot,
                catalog_source=catalog.source, catalog_as_of=catalog.as_of, catalog_sources=catalog.per_cloud(),
                ranked=ranked,
                feasible=feasible, hours=hours, budget_usd=budget_usd, ranking=ranking,
                warnings=warnings, with_effective=rate_fn is not None, objective=objective,
                figures=figs, throughput_model=getattr(figures, "model", None),
                throughput_engine=getattr(figures, "engine", None))


def _rank_per_token(rows: list) -> list:
    """By $ per 1M output tokens; offers without a figure last, by effective $/h (stable sort:
    equal keys keep the catalog's deterministic order, as in `_rank`)."""
    known = [r for r in rows if r[4]]
    known.sort(key=_first)
    if len(known) == len(rows):
        return known
    rest = [r for r in rows if not r[4]]
    rest.sort(key=_fourth)
    return known + rest


def _fourth(r):
    return r[3]


def _tie(o: Offer) -> tuple:
    return (o.cloud, o.region, o.zone or "", o.instance_type, o.accelerator, o.count)


def _rank(rows: list) -> list:
    """Sort by effective $/h. The catalog index is pre-sorted by (cloud, region, zone, type),
    and Python's sort is stable, so equal prices keep that deterministic order without
    comparing tuples: sorting 1M offers on the float alone is several times faster."""
    rows.sort(key=_first)
    return rows


def _first(r):
    return r[0]


def _prefer(rows: list, preferred: set, pct: float) -> list:
    """Offers in preferred regions priced within pct% of the cheapest move to the front."""
    limit = rows[0][0] * (1 + pct / 100.0) + 1e-9
    front = [r for r in rows if r[2].region in preferred and r[0] <= limit]
    if not front:
        return rows
    ids = {id(r) for r in front}
    return front + [r for r in rows if id(r) not in ids]


def _no_match_message(recipe: Recipe, catalog: Catalog) -> str:
    wanted = ", ".join(str(s) for s in recipe.resources.accelerators)
    counts: dict[str, set] = {}
    for (name, count) in catalog.by_accelerator():
        counts.setdefault(name, set()).add(count)
    hints = []
    for spec in recipe.resources.accelerators:
        have = counts.get(spec.name.lower())
        if have:
            hints.append(f"{spec.name} is offered with {', '.join(str(c) for c in sorted(have))} per node")
        else:
            hints.append(f"{spec.name} is not in this catalog")
    if "rayctl-shipped" in catalog.source and any(spec.name.lower() not in counts
                                                           for spec in recipe.resources.accelerators):
        hints.append("the snapshot shipped with rayctl holds A100, A100-80GB, H100, H200, L4, L40S, A10G and "
                     "B200 offers only; `rayctl pricing refresh` (no credentials needed) downloads every GPU")
    return (f"{recipe.path}: no offer for {wanted} in catalog {catalog.source} "
            f"(as of {catalog.as_of or 'unknown'}): {'; '.join(hints)}.")


def _filtered_message(recipe: Recipe, reasons: dict, matched: int, catalog: Catalog) -> str:
    why = ", ".join(f"{n} by {k}" for k, n in reasons.items() if n)
    mode = recipe.resources.spot
    hint = "Loosen resources.clouds/regions/cpus/memory/max_hourly_usd"
    if mode == "spot":
        hint += " or try spot: auto"
    return (f"{recipe.path}: no feasible offer. {matched} offer(s) have "
            f"{', '.join(str(s) for s in recipe.resources.accelerators)} but all were ruled out "
            f"({why}; pricing mode asked: {mode}). {hint}.")
