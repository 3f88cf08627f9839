"""Rank every feasible offer for a recipe, cheapest cluster $/h first.

An offer is feasible when its accelerator name and per-node count match one of the
recipe's alternatives exactly, it has a price in the asked pricing mode, and it meets
every constraint (clouds, regions, cpus, memory, max $/h, budget). The ranked list is
the failover order: the provisioner tries the first candidate, then the next.

Ranking key, in order:
1. with `spot: auto`, every spot offer before every on-demand offer;
2. offers in `prefer_regions` priced within `prefer_within_pct` of the cheapest;
3. cluster $/h (nodes x per-node price);
4. ties broken by cloud, region, zone, instance type, accelerator: deterministic.

Optionally a `rate_fn(cloud, region, instance_type) -> interruptions/hour` makes spot
offers rank by effective $/h = price x (1 + rate x (restart + checkpoint/2) / 60)
(see `effective_price`); sticker prices are kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .catalog import Catalog, Offer
from .errors import InputError, NoPlanError
from .recipe import Recipe


@dataclass(frozen=True)
class Candidate:
    cloud: str
    region: str
    zone: str | None
    instance_type: str
    accelerator: str
    accelerator_count: int
    spot: bool
    hourly_usd_per_node: float
    hourly_usd: float
    vcpus: float | None = None
    memory_gib: float | None = None
    effective_hourly_usd: float | None = None

    def as_dict(self) -> dict:
        d = {
            "cloud": self.cloud, "region": self.region, "zone": self.zone,
            "instance_type": self.instance_type, "accelerator": self.accelerator,
            "accelerator_count": self.accelerator_count, "spot": self.spot,
            "hourly_usd_per_node": self.hourly_usd_per_node, "hourly_usd": self.hourly_usd,
        }
        if self.effective_hourly_usd is not None:
            d["effective_hourly_usd"] = self.effective_hourly_usd
        return d

    @property
    def label(self) -> str:
        where = "/".join(x for x in (self.cloud, self.region, self.zone) if x)
        return f"{where} {self.instance_type} {self.accelerator}:{self.accelerator_count}" \
               f" {'spot' if self.spot else 'on-demand'}"


@dataclass
class Plan:
    recipe: str
    kind: str
    nodes: int
    spot_mode: str
    catalog_source: str
    catalog_as_of: str | None
    candidates: list[Candidate]
    feasible: int
    hours: float
    budget_usd: float | None
    ranking: str = "sticker"
    warnings: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> Candidate:
        return self.candidates[0]

    @property
    def estimate_usd(self) -> float:
        return round(self.chosen.hourly_usd * self.hours, 2)

    def as_dict(self) -> dict:
        d = {
            "recipe": self.recipe,
            "kind": self.kind,
            "nodes": self.nodes,
            "catalog": {"source": self.catalog_source, "as_of": self.catalog_as_of},
            "chosen": self.chosen.as_dict(),
            "candidates": [c.as_dict() for c in self.candidates],
            "estimate": {"hours": _num(self.hours), "usd": self.estimate_usd},
            "spot": self.spot_mode,
            "feasible": self.feasible,
            "ranking": self.ranking,
        }
        if self.budget_usd is not None:
            d["budget_usd"] = _num(self.budget_usd)
        return d


def _num(x: float):
    return int(x) if float(x).is_integer() else x


def effective_price(price: float, rate_per_hour: float, restart_minutes: float, checkpoint_minutes: float) -> float:
    """Expected $/h of a spot run that loses (restart + half a checkpoint interval) per interruption."""
    return price * (1.0 + rate_per_hour * (restart_minutes + checkpoint_minutes / 2.0) / 60.0)


def plan(recipe: Recipe, catalog: Catalog, *, budget_usd: float | None = None, hours: float | None = None,
         top: int | None = None, rate_fn: Callable[[str, str, str], float] | None = None) -> Plan:
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

    rows: list[tuple] = []  # (group, hourly_cluster, effective, tie..., offer, spot)
    for o in matched:
        if clouds and o.cloud not in clouds:
            reasons["cloud"] += 1
            continue
        if (regions and o.region not in regions) or o.region in excluded:
            reasons["region"] += 1
            continue
        if (cpus and not cpus.admits(o.vcpus)) or (mem and not mem.admits(o.memory_gib)):
            reasons["cpus/memory"] += 1
            continue
        for group, spot in enumerate(modes):
            p = o.spot_price if spot else o.price
            if p is None:
                reasons["price mode"] += 1
                continue
            cluster = p * nodes
            if cap is not None and cluster > cap + 1e-9:
                reasons["max_hourly_usd"] += 1
                continue
            eff = cluster
            if spot and rate_fn is not None:
                eff = effective_price(cluster, rate_fn(o.cloud, o.region, o.instance_type),
                                      res.restart_minutes, res.checkpoint_minutes)
            rows.append((group, eff, cluster, o.cloud, o.region, o.zone or "", o.instance_type,
                         o.accelerator, o.count, spot, o))
    if not rows:
        raise NoPlanError(_filtered_message(recipe, reasons, len(matched)))

    feasible_before_budget = rows
    if budget_usd is not None:
        per_hour = budget_usd / hours
        rows = [r for r in rows if r[2] <= per_hour + 1e-9]
        if not rows:
            cheapest = min(feasible_before_budget, key=lambda r: (r[2], r[3:10]))
            c = _candidate(cheapest, nodes, rate_fn is not None)
            cost = round(c.hourly_usd * hours, 2)
            buys = budget_usd / c.hourly_usd
            raise NoPlanError(
                f"{recipe.path}: no offer fits the budget of ${budget_usd:,.2f} for {_num(hours)} h. "
                f"The cheapest feasible offer is {c.label} at ${c.hourly_usd:,.4f}/h for the cluster "
                f"= ${cost:,.2f} for {_num(hours)} h; ${budget_usd:,.2f} buys {buys:.2f} h of it. "
                f"Raise the budget to at least ${cost:,.2f}, or shorten budget.max_hours.")

    rows.sort(key=lambda r: r[:10])
    if res.prefer_regions:
        rows = _prefer(rows, set(res.prefer_regions), res.prefer_within_pct)
    feasible = len(rows)
    if top is not None:
        rows = rows[:top]
    ranking = "effective" if rate_fn is not None and any(r[9] for r in rows) else "sticker"
    cands = [_candidate(r, nodes, rate_fn is not None) for r in rows]
    return Plan(recipe=recipe.name, kind=recipe.kind, nodes=nodes, spot_mode=res.spot,
                catalog_source=catalog.source, catalog_as_of=catalog.as_of, candidates=cands,
                feasible=feasible, hours=hours, budget_usd=budget_usd, ranking=ranking,
                warnings=list(catalog.warnings))


def _prefer(rows: list, preferred: set, pct: float) -> list:
    """Move offers in preferred regions within pct% of their group's cheapest to the group's front."""
    out: list = []
    i = 0
    while i < len(rows):
        g = rows[i][0]
        j = i
        while j < len(rows) and rows[j][0] == g:
            j += 1
        group = rows[i:j]
        limit = group[0][1] * (1 + pct / 100.0) + 1e-9
        front = [r for r in group if r[4] in preferred and r[1] <= limit]
        ids = {id(r) for r in front}
        out.extend(front)
        out.extend(r for r in group if id(r) not in ids)
        i = j
    return out


def _candidate(r: tuple, nodes: int, with_effective: bool) -> Candidate:
    o: Offer = r[10]
    spot = r[9]
    per_node = o.spot_price if spot else o.price
    return Candidate(
        cloud=o.cloud, region=o.region, zone=o.zone, instance_type=o.instance_type,
        accelerator=o.accelerator, accelerator_count=o.count, spot=spot,
        hourly_usd_per_node=round(per_node, 6), hourly_usd=round(per_node * nodes, 6),
        vcpus=o.vcpus, memory_gib=o.memory_gib,
        effective_hourly_usd=round(r[1], 6) if with_effective else None,
    )


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
    return (f"{recipe.path}: no offer for {wanted} in catalog {catalog.source} "
            f"(as of {catalog.as_of or 'unknown'}): {'; '.join(hints)}.")


def _filtered_message(recipe: Recipe, reasons: dict, matched: int) -> str:
    why = ", ".join(f"{n} by {k}" for k, n in reasons.items() if n)
    mode = recipe.resources.spot
    return (f"{recipe.path}: no feasible offer. {matched} offer(s) have "
            f"{', '.join(str(s) for s in recipe.resources.accelerators)} but all were ruled out "
            f"({why}; pricing mode asked: {mode}). Loosen resources.clouds/regions/cpus/memory/"
            f"max_hourly_usd or try spot: auto.")
