"""What a plan is: `Plan` (the ranked rows, built lazily into `Candidate`s in failover
order) and its JSON (`as_dict`, the throughput figures of a per-token plan)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    output_tokens_per_s: float | None = None  # per-token objective: the cluster's
    throughput_source: str | None = None
    throughput_runs: int | None = None
    usd_per_1m_output_tokens: float | None = None
    effective_usd_per_1m_output_tokens: float | None = None

    def as_dict(self) -> dict:
        d = {
            "cloud": self.cloud, "region": self.region, "zone": self.zone,
            "instance_type": self.instance_type, "accelerator": self.accelerator,
            "accelerator_count": self.accelerator_count, "spot": self.spot,
            "hourly_usd_per_node": self.hourly_usd_per_node, "hourly_usd": self.hourly_usd,
        }
        if self.effective_hourly_usd is not None:
            d["effective_hourly_usd"] = self.effective_hourly_usd
        if self.throughput_source is not None:
            d["output_tokens_per_s"] = self.output_tokens_per_s
            d["throughput_source"] = self.throughput_source
            if self.throughput_runs is not None:
                d["throughput_runs"] = self.throughput_runs
            d["usd_per_1m_output_tokens"] = self.usd_per_1m_output_tokens
            if self.effective_usd_per_1m_output_tokens is not None:
                d["effective_usd_per_1m_output_tokens"] = self.effective_usd_per_1m_output_tokens
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
    ranked: list = field(repr=False)  # [(spot, [(effective, cluster $/h, Offer), ...])] in failover order
    feasible: int
    hours: float
    budget_usd: float | None
    ranking: str = "sticker"
    warnings: list[str] = field(default_factory=list)
    with_effective: bool = False
    objective: str = "hourly"
    figures: dict = field(default_factory=dict)  # per-token: accelerator -> Figure | None
    throughput_model: str | None = None
    throughput_engine: str | None = None
    baselines: dict | None = None  # `--api` / `compare_to`: the managed-API comparison
    catalog_sources: dict = field(default_factory=dict)  # per cloud, when the catalog mixes sources
    _candidates: list | None = field(default=None, repr=False)

    @property
    def candidates(self) -> list[Candidate]:
        """The failover order (built on first use: large catalogs rank many offers)."""
        if self._candidates is None:
            self._candidates = [make_candidate(r, s, self.nodes, self.with_effective, self.figures)
                                for s, rows in self.ranked for r in rows]
        return self._candidates

    @property
    def chosen(self) -> Candidate:
        if self._candidates is not None:
            return self._candidates[0]
        s, rows = next((s, rows) for s, rows in self.ranked if rows)
        return make_candidate(rows[0], s, self.nodes, self.with_effective, self.figures)

    @property
    def estimate_usd(self) -> float:
        return round(self.chosen.hourly_usd * self.hours, 2)

    def as_dict(self) -> dict:
        d = {
            "recipe": self.recipe,
            "kind": self.kind,
            "nodes": self.nodes,
            "catalog": {"source": self.catalog_source, "as_of": self.catalog_as_of,
                        **({"sources": self.catalog_sources} if self.catalog_sources else {})},
            "chosen": self.chosen.as_dict(),
            "candidates": [c.as_dict() for c in self.candidates],
            "estimate": {"hours": plain_number(self.hours), "usd": self.estimate_usd},
            "spot": self.spot_mode,
            "feasible": self.feasible,
            "ranking": self.ranking,
            "objective": self.objective,
        }
        if self.budget_usd is not None:
            d["budget_usd"] = plain_number(self.budget_usd)
        if self.objective == "per-token":
            d["throughput"] = {
                "model": self.throughput_model, "engine": self.throughput_engine,
                "figures": [_figure_doc(name, f) for name, f in sorted(self.figures.items())],
            }
        if self.baselines is not None:
            d["baselines"] = self.baselines
        return d


def _figure_doc(name: str, f) -> dict:
    if f is None:
        return {"accelerator": name, "output_tokens_per_s_per_gpu": None, "source": None,
                "basis": "no measured, published or scalable figure; state one with --gpu-throughput"}
    d = {"accelerator": name, "output_tokens_per_s_per_gpu": round(f.per_gpu, 3), "source": f.source}
    if f.runs is not None:
        d["runs"] = f.runs
    if f.model:
        d["model"] = f.model
    if f.engine:
        d["engine"] = f.engine
    d["basis"] = f.basis
    if f.note:
        d["note"] = f.note
    return d


def plain_number(x: float):
    return int(x) if float(x).is_integer() else x


def _sig(x: float) -> float:
    """10 significant digits: $ per 1M tokens are small numbers, and JSON stays stable."""
    return float(f"{x:.10g}")


def make_candidate(r: tuple, spot: bool, nodes: int, with_effective: bool, figures: dict) -> Candidate:
    if len(r) == 5:
        key, _cluster, o, eff, tps = r
    else:
        (eff, _cluster, o), tps = r, None
    per_node = o.spot_price if spot else o.price
    extra = {}
    if len(r) == 5:
        f = figures.get(o.accelerator)
        extra = dict(output_tokens_per_s=round(tps, 3) if tps else None,
                     throughput_source=f.source if f is not None else "none",
                     throughput_runs=f.runs if f is not None else None,
                     usd_per_1m_output_tokens=_sig(per_node * nodes / (tps * 3600.0) * 1e6) if tps else None,
                     effective_usd_per_1m_output_tokens=_sig(key) if tps and with_effective else None)
    return Candidate(
        cloud=o.cloud, region=o.region, zone=o.zone, instance_type=o.instance_type,
        accelerator=o.accelerator, accelerator_count=o.count, spot=spot,
        hourly_usd_per_node=round(per_node, 6), hourly_usd=round(per_node * nodes, 6),
        vcpus=o.vcpus, memory_gib=o.memory_gib,
        effective_hourly_usd=round(eff, 6) if with_effective else None,
        **extra,
    )
