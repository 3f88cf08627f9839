"""Rebuild rayctl's shipped offline price snapshot (`pricing/<cloud>/vms.csv`).

Input: a folder in SkyPilot's catalog layout taken from skypilot-org/skypilot-catalog
(default `../shared/catalog/skypilot-v7`, see its SOURCE.md). Output: for every cloud with
GPU rows of the families below, the rows of those families (every region and zone, on-demand
and spot prices as upstream lists them) reduced to the columns the planner reads. GCP keeps
its host rows (`a2-*`, `a3-*`, `g2-*`, ... empty AcceleratorName) for the kept GPUs, since a
GCP offer is host + accelerator. Values are upstream's text, in upstream order, except a
SpotPrice of 0 or less (vast.ai's mark for bid-based machines, not a price), written empty.

    python scripts/build_pricing_snapshot.py [--src DIR] [--out pricing]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from rayctl.planning.catalog import GCP_HOSTS  # noqa: E402

# The GPU families shipped: the names a recipe uses (exact match, as in SkyPilot), plus the
# hyphenated variants some clouds list them under.
FAMILIES = ("A100", "A100-80GB", "H100", "H200", "L4", "L40S", "A10G", "B200")
VARIANTS = ("A100-80GB-SXM", "A100-80G", "H100-SXM", "H100-NVL", "H100-MEGA", "H200-SXM")
KEEP = set(FAMILIES) | set(VARIANTS)
COLUMNS = ["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "SpotPrice",
           "Region", "AvailabilityZone"]


def gcp_hosts() -> set[str]:
    return {h for acc, table in GCP_HOSTS.items() if acc in KEEP for hosts in table.values() for h in hosts}


def _zero(v) -> bool:
    try:
        return v not in (None, "") and float(v) <= 0
    except ValueError:
        return False


def reduce(src: Path, out: Path) -> dict[str, int]:
    hosts = gcp_hosts()
    counts = {}
    for cdir in sorted(p for p in src.iterdir() if (p / "vms.csv").is_file()):
        cloud = cdir.name
        with open(cdir / "vms.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        kept = []
        for r in rows:
            acc, itype = r.get("AcceleratorName") or "", r.get("InstanceType") or ""
            if acc in KEEP or (cloud == "gcp" and not acc and itype in hosts):
                kept.append(r)
        if not any(r.get("AcceleratorName") for r in kept):
            continue  # no GPU rows of these families: nothing to ship for this cloud
        cols = [c for c in COLUMNS if c in rows[0]]
        dest = out / cloud / "vms.csv"
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(cols)
            for r in kept:
                if _zero(r.get("SpotPrice")):
                    r["SpotPrice"] = ""  # vast.ai: 0.00 marks a bid-based machine, not a price
                w.writerow([r.get(c, "") for c in cols])
        counts[cloud] = len(kept)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=REPO.parent / "shared" / "catalog" / "skypilot-v7")
    ap.add_argument("--out", type=Path, default=REPO / "pricing")
    a = ap.parse_args()
    for cloud, n in reduce(a.src, a.out).items():
        print(f"{cloud}: {n} rows -> {a.out / cloud / 'vms.csv'}")


if __name__ == "__main__":
    main()
