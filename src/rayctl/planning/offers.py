"""The price data's types: `Offer` (one instance type in one place, with its on-demand
and spot $/h per node) and `Catalog` (the offers, where they came from, how old they are)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


class Offer:
    """One (cloud, region, zone, instance type) with its on-demand and spot $/h per node."""

    __slots__ = ("cloud", "region", "zone", "instance_type", "accelerator", "count", "vcpus",
                 "memory_gib", "price", "spot_price")

    def __init__(self, cloud, region, zone, instance_type, accelerator, count, vcpus, memory_gib,
                 price, spot_price):
        self.cloud = cloud
        self.region = region
        self.zone = zone
        self.instance_type = instance_type
        self.accelerator = accelerator
        self.count = count
        self.vcpus = vcpus
        self.memory_gib = memory_gib
        self.price = price
        self.spot_price = spot_price

    def hourly(self, spot: bool) -> float | None:
        return self.spot_price if spot else self.price

    def __repr__(self) -> str:
        return (f"Offer({self.cloud}/{self.region}/{self.zone} {self.instance_type} "
                f"{self.accelerator}:{self.count} od={self.price} spot={self.spot_price})")


@dataclass
class Catalog:
    offers: list[Offer]
    source: str
    as_of: str | None
    warnings: list[str] = field(default_factory=list)
    _index: dict | None = None
    # cloud -> {"source", "file", "as_of"} when the catalog mixes sources per cloud (no
    # --catalog / $RAYCTL_CATALOG); empty for one explicit folder.
    sources: dict = field(default_factory=dict)

    def by_accelerator(self) -> dict[tuple[str, int], list[Offer]]:
        """Offers keyed by (lower-case accelerator name, count), each list sorted by
        (cloud, region, zone, instance type): the planner's stable price sort then breaks
        ties in that order, deterministically, for free."""
        if self._index is None:
            idx: dict = {}
            for o in self.offers:
                idx.setdefault((o.accelerator.lower(), o.count), []).append(o)
            for offers in idx.values():
                offers.sort(key=_tie_key)
            self._index = idx
        return self._index

    def per_cloud(self) -> dict:
        """cloud -> {"source", "as_of"} when the clouds come from more than one source, else {}."""
        if len({s["source"] for s in self.sources.values()}) < 2:
            return {}
        return {c: {"source": s["source"], "as_of": s["as_of"]} for c, s in sorted(self.sources.items())}

    def doc(self) -> dict:
        """The `catalog` object of --json documents; "sources" (per cloud) only for a mix."""
        d = {"source": self.source, "as_of": self.as_of}
        per_cloud = self.per_cloud()
        if per_cloud:
            d["sources"] = per_cloud
        return d

    def accelerator_names(self) -> dict[str, str]:
        return {o.accelerator.lower(): o.accelerator for o in self.offers}

    def age_days(self, today: dt.date | None = None) -> int | None:
        if not self.as_of:
            return None
        today = today or dt.datetime.now(dt.timezone.utc).date()
        return (today - dt.date.fromisoformat(self.as_of)).days


def _tie_key(o: Offer) -> tuple:
    return (o.cloud, o.region, o.zone or "", o.instance_type, o.accelerator)


def lower_price(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
