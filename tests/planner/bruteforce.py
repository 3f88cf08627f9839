"""An independent brute force over SkyPilot-layout CSVs: the cheapest $/h per node for
NAME:COUNT, spot or on-demand. Written separately from rayctl.planning.catalog on purpose, so
the planner is checked against a second reading of the data, not against itself.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

# GCP attaches each GPU to its own host family; the host row's price is added.
_GCP_HOST = {
    "a100": r"a2-highgpu-{n}g|a2-megagpu-{n}g",
    "a100-80gb": r"a2-ultragpu-{n}g",
    "h100": r"a3-highgpu-{n}g",
    "h100-mega": r"a3-megagpu-{n}g",
    "h200": r"a3-ultragpu-{n}g",
    "b200": r"a4-highgpu-{n}g",
    "l4": r"g2-standard-\d+",
}
_L4_HOSTS = {1: {4, 8, 12, 16, 32}, 2: {24}, 4: {48}, 8: {96}}


def _price(raw: str | None) -> float | None:
    if raw in (None, ""):
        return None
    v = float(raw)
    return v if v > 0 and not math.isnan(v) else None


def _host_ok(acc: str, n: int, itype: str) -> bool:
    pat = _GCP_HOST.get(acc.lower())
    if pat is None or not re.fullmatch(pat.format(n=n), itype):
        return False
    if acc.lower() == "l4":
        return int(itype.rsplit("-", 1)[1]) in _L4_HOSTS.get(n, set())
    return True


def offers(catalog: Path, acc: str, n: int, spot: bool) -> list[tuple[float, str, str, str, str]]:
    """Every (price, cloud, region, zone, instance_type) for acc:n in the mode."""
    col = "SpotPrice" if spot else "Price"
    out = []
    for f in sorted(catalog.glob("*/vms.csv")):
        cloud = f.parent.name
        rows = list(csv.DictReader(open(f, newline="", encoding="utf-8")))
        if cloud == "gcp":
            hosts = [r for r in rows if r["InstanceType"] and not r["AcceleratorName"]]
            for a in rows:
                if a["InstanceType"] or a["AcceleratorName"].lower() != acc.lower():
                    continue
                if float(a["AcceleratorCount"]) != n:
                    continue
                pa = _price(a.get(col))
                for h in hosts:
                    if h["AvailabilityZone"] != a["AvailabilityZone"] or not _host_ok(acc, n, h["InstanceType"]):
                        continue
                    ph = _price(h.get(col))
                    if pa is not None and ph is not None:
                        out.append((pa + ph, cloud, a["Region"], a["AvailabilityZone"], h["InstanceType"]))
            continue
        for r in rows:
            if not r.get("AcceleratorName") or r["AcceleratorName"].lower() != acc.lower():
                continue
            if not r.get("InstanceType") or float(r["AcceleratorCount"] or 0) != n:
                continue
            p = _price(r.get(col))
            if p is not None:
                out.append((p, cloud, r["Region"], r.get("AvailabilityZone") or "", r["InstanceType"]))
    return out


def cheapest(catalog: Path, acc: str, n: int, spot: bool) -> float | None:
    o = offers(catalog, acc, n, spot)
    return min(o)[0] if o else None
