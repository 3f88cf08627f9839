"""The plan's candidates as a SkyPilot task's `resources.ordered`, in the plan's order:
`{infra: cloud/region/zone, instance_type, accelerators: NAME:N, use_spot}`.

AWS zones in the catalog are zone IDs (`use1-az2`); they are written as this account's
zone names when a mapping is known (`rayctl pricing refresh --cloud aws`, or SkyPilot's
own az_mappings cache), else as IDs (what SkyPilot itself uses without AWS credentials).
Offers on clouds SkyPilot cannot provision are left out.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path

MAX_CANDIDATES = 16


def aws_zone_names(cache_dir: Path | None = None) -> dict[str, str] | None:
    """zone ID -> zone name for this AWS account, if any mapping is known locally."""
    from ...settings import rayctl_home, skypilot_cache_dir

    files = []
    mine = (cache_dir or rayctl_home() / "pricing-cache") / "aws" / "az_mappings.csv"
    if mine.is_file():
        files.append(mine)
    sky = sorted(glob.glob(str(skypilot_cache_dir() / "aws" / "az_mappings-*.csv")), key=os.path.getmtime)
    sky = [Path(p) for p in sky if not p.endswith("-default.csv")]
    files.extend(reversed(sky))
    for f in files:
        try:
            with open(f, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        except OSError:
            continue
        m = {r["AvailabilityZone"]: r["AvailabilityZoneName"] for r in rows
             if r.get("AvailabilityZone") and r.get("AvailabilityZoneName")}
        if m:
            return m
    return None


# ------------------------------------------------------------------ resources

# Clouds SkyPilot 0.14.1 can provision (sky.utils.registry.CLOUD_REGISTRY); offers on other
# clouds in a catalog (e.g. simplepod) cannot go into a task.
SKYPILOT_CLOUDS = frozenset({
    "aws", "azure", "cudo", "digitalocean", "do", "fluidstack", "gcp", "hyperbolic", "ibm", "kubernetes",
    "lambda", "mithril", "nebius", "oci", "paperspace", "primeintellect", "runpod", "scp", "seeweb",
    "shadeform", "slurm", "ssh", "vast", "verda", "vsphere", "yotta"})


def resource_entry(c, zone_names: dict | None, *, aws_region_only: bool = False) -> dict:
    zone = c.zone
    if c.cloud == "aws" and zone:
        if aws_region_only:
            zone = None
        elif zone_names is not None:
            zone = zone_names.get(zone)  # a zone this account lacks: region level
    infra = "/".join(x for x in (c.cloud, c.region, zone) if x)
    return {"infra": infra, "instance_type": c.instance_type,
            "accelerators": f"{c.accelerator}:{c.accelerator_count}", "use_spot": bool(c.spot)}


def ordered_resources(candidates, *, zone_names: dict | None = None, aws_region_only: bool = False,
                      max_candidates: int = MAX_CANDIDATES) -> tuple[list[dict], list]:
    """(ordered resource dicts, the candidates they came from), deduplicated, capped."""
    out, used, seen = [], [], set()
    for c in candidates:
        if c.cloud not in SKYPILOT_CLOUDS:
            continue
        e = resource_entry(c, zone_names, aws_region_only=aws_region_only)
        key = json.dumps(e, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        out.append(e)
        used.append(c)
        if len(out) >= max_candidates:
            break
    return out, used
