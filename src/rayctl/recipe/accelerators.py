"""Accelerator names and `NAME[:COUNT]` specs.

Names follow SkyPilot's catalog (`AcceleratorName`); matching is case-insensitive but
exact otherwise, as in SkyPilot (`A100-80GB` is not `A100`, `H100-SXM` is not `H100`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

# Canonical names seen in SkyPilot catalogs (v7/v8) for GPU offers. A catalog may
# add more; the planner accepts any name a loaded catalog has.
KNOWN = (
    "A10", "A10G", "A100", "A100-80GB", "A100-80GB-SXM", "A100-80G", "A40", "A6000",
    "B200", "GH200", "H100", "H100-MEGA", "H100-NVL", "H100-SXM", "H200", "H200-SXM",
    "K80", "L4", "L40", "L40S", "M60", "P100", "P4", "P40", "RTX4090", "RTX6000",
    "RTXPRO6000", "T4", "T4G", "V100", "V100-32GB", "V100-32G",
)
_BY_LOWER = {n.lower(): n for n in KNOWN}
_SPEC = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]*)\s*(?::\s*([0-9]+(?:\.[0-9]+)?)\s*)?$")


@dataclass(frozen=True, order=True)
class AcceleratorSpec:
    name: str
    count: int

    def __str__(self) -> str:
        return f"{self.name}:{self.count}"


def canonical(name: str, extra: dict[str, str] | None = None) -> str | None:
    """Canonical spelling of `name`, or None when unknown."""
    low = name.lower()
    if extra and low in extra:
        return extra[low]
    return _BY_LOWER.get(low)


def suggest(name: str, names=KNOWN) -> list[str]:
    pool = {n.lower(): n for n in names}
    return [pool[m] for m in difflib.get_close_matches(name.lower(), list(pool), n=3, cutoff=0.6)]


def parse_spec(text: str) -> AcceleratorSpec:
    """Parse `NAME[:COUNT]`; raise ValueError with a user-facing message."""
    m = _SPEC.match(text)
    if not m:
        raise ValueError(f"'{text}' is not an accelerator spec; write NAME or NAME:COUNT, e.g. H100:8")
    name, count = m.group(1), m.group(2)
    if count is None:
        n = 1
    else:
        value = float(count)
        if value != int(value) or value < 1:
            raise ValueError(f"accelerator count in '{text}' must be a whole number >= 1")
        n = int(value)
        if n > 64:
            raise ValueError(f"accelerator count in '{text}' is {n}; a node has at most 64")
    canon = canonical(name)
    if canon is None:
        close = suggest(name)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown accelerator '{name}'.{hint} Known: {', '.join(KNOWN)}")
    return AcceleratorSpec(canon, n)
