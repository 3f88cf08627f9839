"""Recipe objects, built from a validated document (defaults come from recipe.schema)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .accelerators import AcceleratorSpec, parse_spec


@dataclass(frozen=True)
class MinSpec:
    """`N` (exactly N) or `N+` (at least N), SkyPilot's notation for cpus/memory."""

    value: float
    at_least: bool

    @classmethod
    def parse(cls, raw) -> "MinSpec | None":
        if raw is None:
            return None
        if isinstance(raw, (int, float)):
            return cls(float(raw), False)
        s = str(raw)
        return cls(float(s.rstrip("+")), s.endswith("+"))

    def admits(self, x: float | None) -> bool:
        if x is None:
            return False
        return x >= self.value - 1e-9 if self.at_least else abs(x - self.value) < 1e-6

    def __str__(self) -> str:
        v = int(self.value) if self.value == int(self.value) else self.value
        return f"{v}{'+' if self.at_least else ''}"


@dataclass(frozen=True)
class Resources:
    accelerators: tuple[AcceleratorSpec, ...] = ()
    nodes: int = 1
    spot: str = "on-demand"  # "spot" | "on-demand" | "auto"
    clouds: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    exclude_regions: tuple[str, ...] = ()
    prefer_regions: tuple[str, ...] = ()
    prefer_within_pct: float = 10.0
    max_hourly_usd: float | None = None
    cpus: MinSpec | None = None
    memory: MinSpec | None = None
    checkpoint_minutes: float = 30.0
    restart_minutes: float = 5.0
    objective: str | None = None  # "per-token" | "hourly"; None: the kind's default


@dataclass(frozen=True)
class Budget:
    max_usd: float | None = None
    max_hours: float | None = None


@dataclass(frozen=True)
class Teardown:
    after: str  # "job" | "idle" | "never"
    idle_minutes: int | None = None


@dataclass
class Recipe:
    name: str
    kind: str
    resources: Resources
    budget: Budget
    target: str
    teardown: Teardown
    schedule: str | None
    workload: dict[str, Any]
    path: str = ""
    sha256: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    compare_to: tuple[str, ...] = ()
    marks: Any = field(default=None, repr=False, compare=False)  # the YAML positions (yamlsafe.Located)

    def where(self, path: tuple) -> tuple[int | None, int | None]:
        """(line, column) of a field in the recipe file, e.g. ("workload", "input"); (None, None) if unknown."""
        return self.marks.where(path) if self.marks is not None else (None, None)

    @property
    def is_batch(self) -> bool:
        return self.kind != "serve"


def build(doc, path: str, data: bytes) -> Recipe:
    """Recipe from a document (dict or yamlsafe.Located) that passed schema validation."""
    from .schema import default

    marks = None
    if not isinstance(doc, dict):
        marks, doc = doc, doc.value
    r = doc.get("resources") or {}
    accs = r.get("accelerators")
    if accs is None:
        specs: tuple = ()
    else:
        specs = tuple(dict.fromkeys(parse_spec(a) for a in ([accs] if isinstance(accs, str) else accs)))
    spot_raw = r.get("spot", default("resources", "spot"))
    spot = "auto" if spot_raw == "auto" else ("spot" if spot_raw else "on-demand")
    res = Resources(
        accelerators=specs,
        nodes=int(r.get("nodes", default("resources", "nodes"))),
        spot=spot,
        clouds=tuple(r.get("clouds", ())),
        regions=tuple(r.get("regions", ())),
        exclude_regions=tuple(r.get("exclude_regions", ())),
        prefer_regions=tuple(r.get("prefer_regions", ())),
        prefer_within_pct=float(r.get("prefer_within_pct", default("resources", "prefer_within_pct"))),
        max_hourly_usd=r.get("max_hourly_usd"),
        cpus=MinSpec.parse(r.get("cpus")),
        memory=MinSpec.parse(r.get("memory")),
        checkpoint_minutes=float(r.get("checkpoint_minutes", default("resources", "checkpoint_minutes"))),
        restart_minutes=float(r.get("restart_minutes", default("resources", "restart_minutes"))),
        objective=r.get("objective"),
    )
    b = doc.get("budget") or {}
    kind = doc["kind"]
    t = doc.get("teardown") or {}
    default_after = "never" if kind == "serve" else "job"
    after = t.get("after", "idle" if "idle_minutes" in t else default_after)
    teardown = Teardown(after=after, idle_minutes=t.get("idle_minutes"))
    return Recipe(
        name=doc["name"],
        kind=kind,
        resources=res,
        budget=Budget(max_usd=b.get("max_usd"), max_hours=b.get("max_hours")),
        target=doc.get("target", default("target")),
        teardown=teardown,
        schedule=doc.get("schedule"),
        workload=dict(doc.get("workload") or {}),
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        raw=doc,
        compare_to=tuple(doc.get("compare_to") or ()),
        marks=marks,
    )
