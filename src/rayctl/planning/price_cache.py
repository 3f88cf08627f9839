"""rayctl's live price cache (`$RAYCTL_HOME/pricing-cache/`), overlaid on the catalog.

`rayctl pricing refresh` writes it (see `rayctl.planning.refresh`); `catalog.load()` overlays it on
the catalog it read (per cloud: rayctl's refreshed catalog, `~/.sky/catalogs/v8` or the shipped snapshot; an explicit
`--catalog` or `$RAYCTL_CATALOG` is used exactly as given). Files, SkyPilot column names:

- `aws/spot_prices.csv` (InstanceType, Region, AvailabilityZone = zone ID,
  AvailabilityZoneName, SpotPrice, Timestamp): the latest spot price per AZ and
  instance type from EC2 `describe_spot_price_history`. For every (region, instance
  type) it covers it is authoritative: a catalog AZ with no live price loses its spot
  offer (EC2 offers no spot there now), a live AZ the catalog lacks gains one (other
  columns copied from the same instance type in that region).
- `aws/az_mappings.csv` (AvailabilityZoneName, AvailabilityZone): this account's zone
  names per zone ID (SkyPilot's az_mappings format), used to write AWS zones in tasks.
- `gcp/accelerators.csv` (AcceleratorName, Region, AvailabilityZone, MaxCount): the GPUs
  each zone offers (`acceleratorTypes.aggregatedList`). A GCP offer in a covered region
  whose zone does not list its GPU (or lists fewer per VM) is dropped.
- `gcp/quotas.csv` (Region, Metric, Limit, Usage): GPU quotas per region (`regions.get`).
  An offer whose region has less free quota than one node's GPUs loses that pricing
  mode (spot uses `PREEMPTIBLE_*` quota when the project has any, else the regular
  quota, as GCP does); `quota_allows(candidate, nodes)` checks nodes x GPUs at launch.
- `meta.json`: per cloud, when the data was fetched, the last attempt, and its error.

A failed refresh keeps the previous files; the plan then says how old they are.
Standard library only: this runs on every `rayctl plan`.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
from pathlib import Path

STALE_HOURS = 24


def cache_dir() -> Path:
    from ..settings import rayctl_home

    return rayctl_home() / "pricing-cache"


def _read_csv(p: Path) -> list[dict]:
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def write_csv(p: Path, header: list[str], rows: list[dict]) -> None:
    """Atomically replace `p` (a reader never sees half a file)."""
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + f".tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, p)


def read_meta(d: Path | None = None) -> dict:
    try:
        return json.loads(((d or cache_dir()) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_meta(meta: dict, d: Path | None = None) -> None:
    d = d or cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f"meta.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, d / "meta.json")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _age_hours(ts: str | None, now: dt.datetime | None = None) -> float | None:
    if not ts:
        return None
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ((now or _now()) - t).total_seconds() / 3600.0


def _fmt_age(h: float) -> str:
    if h < 1:
        return f"{int(h * 60)} min"
    if h < 48:
        return f"{h:.1f} h"
    return f"{h / 24:.1f} days"


# ------------------------------------------------------------------ GPU quota names (GCP)

_QUOTA_OVERRIDES = {"RTXPRO6000": "NVIDIA_RTX_PRO_6000_GPUS"}


def gcp_quota_metric(accelerator: str, spot: bool) -> str:
    base = _QUOTA_OVERRIDES.get(accelerator.upper()) or \
        "NVIDIA_" + accelerator.upper().replace("-", "_") + "_GPUS"
    return ("PREEMPTIBLE_" + base) if spot else base


def _quotas(d: Path) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict = {}
    for r in _read_csv(d / "gcp" / "quotas.csv"):
        try:
            limit, usage = float(r["Limit"]), float(r["Usage"] or 0)
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(limit) and math.isfinite(usage):
            out.setdefault(r["Region"], {})[r["Metric"]] = (limit, usage)
    return out


def free_quota(quotas: dict, region: str, accelerator: str, spot: bool) -> float | None:
    """Free GPUs of this kind in the region (None: unknown)."""
    q = quotas.get(region)
    if q is None:
        return None
    if spot:
        pre = q.get(gcp_quota_metric(accelerator, True))
        if pre is not None and pre[0] > 0:
            return pre[0] - pre[1]
    od = q.get(gcp_quota_metric(accelerator, False))
    if od is None:
        return None
    return od[0] - od[1]


def quota_allows(candidate, nodes: int, d: Path | None = None) -> bool | None:
    """Whether GCP quota admits nodes x GPUs of this candidate (None: unknown / not GCP)."""
    if candidate.cloud != "gcp":
        return None
    free = free_quota(_quotas(d or cache_dir()), candidate.region, candidate.accelerator, candidate.spot)
    if free is None:
        return None
    return free >= candidate.accelerator_count * nodes


# ------------------------------------------------------------------ overlay

def overlay(cat, d: Path | None = None, now: dt.datetime | None = None):
    """Apply the cache to a Catalog in place; returns it (label and warnings updated)."""
    d = d or cache_dir()
    meta = read_meta(d)
    if not meta:
        return cat
    from .offers import Offer

    applied = []
    offers = cat.offers
    aws = meta.get("aws") or {}
    if aws.get("fetched_at") and (d / "aws" / "spot_prices.csv").is_file():
        offers, skipped = _overlay_aws(offers, d, Offer)
        applied.append("aws")
        if skipped:
            cat.warnings.append(f"{d / 'aws' / 'spot_prices.csv'}: skipped {skipped} implausible spot price(s) "
                                "(not finite, or outside $0.001-$1,000 per instance-hour); run "
                                "`rayctl pricing refresh` again")
    gcp = meta.get("gcp") or {}
    if gcp.get("fetched_at"):
        offers = _overlay_gcp(offers, d, set(gcp.get("regions") or ()), bool(gcp.get("zones_complete")))
        applied.append("gcp")
    cat.offers = offers
    cat._index = None
    ages = []
    for cloud in ("aws", "gcp"):
        m = meta.get(cloud) or {}
        age = _age_hours(m.get("fetched_at"), now)
        if cloud in applied and age is not None:
            ages.append(f"{cloud} {_fmt_age(age)} old")
            if age > STALE_HOURS:
                cat.warnings.append(f"live {cloud} prices/availability from `rayctl pricing refresh` are "
                                    f"{_fmt_age(age)} old (fetched {m['fetched_at']}); refresh them")
        if m.get("error"):
            cat.warnings.append(f"the last `rayctl pricing refresh` for {cloud} failed at {m.get('attempted_at')}: "
                                f"{m['error']}; " + (f"using data {_fmt_age(age)} old" if age is not None
                                                     else "no live data for it"))
    if ages:
        cat.source = f"{cat.source} + rayctl live data ({', '.join(ages)})"
    return cat


def _overlay_aws(offers: list, d: Path, Offer) -> tuple[list, int]:
    live: dict = {}
    covered: set = set()
    skipped = 0
    from .catalog_csv import PRICE_MAX, PRICE_MIN

    for r in _read_csv(d / "aws" / "spot_prices.csv"):
        try:
            price = float(r["SpotPrice"])
        except (KeyError, TypeError, ValueError):
            continue
        if not (PRICE_MIN <= price <= PRICE_MAX):  # also false for nan; 0, inf, 1e-300 are no prices
            skipped += price > 0 or not math.isfinite(price)  # 0 or less: no offer, as in the catalog
            continue
        live[(r["InstanceType"], r["Region"], r["AvailabilityZone"])] = price
        covered.add((r["InstanceType"], r["Region"]))
    if not live:
        return offers, skipped
    out = []
    seen = set()
    proto: dict = {}
    for o in offers:
        if o.cloud != "aws" or (o.instance_type, o.region) not in covered:
            out.append(o)
            continue
        key = (o.instance_type, o.region, o.zone)
        seen.add(key)
        proto.setdefault((o.instance_type, o.region), o)
        o.spot_price = live.get(key)
        if o.price is not None or o.spot_price is not None:
            out.append(o)
    for (itype, region, zone), price in sorted(live.items()):
        if (itype, region, zone) in seen:
            continue
        p = proto.get((itype, region))
        if p is None:
            continue  # an instance type rayctl has no catalog row for (unknown GPU): skip
        out.append(Offer("aws", region, zone, itype, p.accelerator, p.count, p.vcpus, p.memory_gib, p.price, price))
    return out, skipped


def _overlay_gcp(offers: list, d: Path, regions: set, zones_complete: bool) -> list:
    avail: dict = {}
    zones_seen: set = set()
    for r in _read_csv(d / "gcp" / "accelerators.csv"):
        try:
            avail[(r["AcceleratorName"].lower(), r["AvailabilityZone"])] = int(float(r["MaxCount"]))
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        zones_seen.add(r["AvailabilityZone"])
    quotas = _quotas(d)
    out = []
    for o in offers:
        if o.cloud != "gcp":
            out.append(o)
            continue
        if zones_complete and o.zone:
            n = avail.get((o.accelerator.lower(), o.zone))
            if n is None or n < o.count:
                continue  # this zone does not offer the GPU (or not this many per VM)
        if o.region in quotas:
            fo = free_quota(quotas, o.region, o.accelerator, False)
            fs = free_quota(quotas, o.region, o.accelerator, True)
            if fo is not None and fo < o.count:
                o.price = None
            if fs is not None and fs < o.count:
                o.spot_price = None
            if o.price is None and o.spot_price is None:
                continue
        out.append(o)
    return out


def status(d: Path | None = None) -> dict:
    """What the cache holds, for `rayctl pricing status`."""
    d = d or cache_dir()
    meta = read_meta(d)
    out = {"dir": str(d), "clouds": {}}
    for cloud in ("aws", "gcp"):
        m = meta.get(cloud)
        if not m:
            continue
        age = _age_hours(m.get("fetched_at"))
        out["clouds"][cloud] = {**m, "age_hours": round(age, 2) if age is not None else None}
    return out
