"""Run SkyPilot's own optimizer in-process on a SkyPilot-layout catalog, offline.

    python benchmarks/skypilot_optimizer.py --catalog DIR A100:1:spot H100:8:on-demand ...

Prints one JSON document: for each case SkyPilot's chosen resources and $/h per node,
plus the time to `import sky` and to optimize. No API server is started, no network
is used: the catalog is installed into a throw-away HOME as `~/.sky/catalogs/v8`,
`common/accelerators.csv` is synthesized from it, and every cloud in the catalog is
enabled the way SkyPilot's own test fixtures do it (monkeypatching `sky.check`).

SkyPilot reads the raw rows; two quirks of the v7 snapshot make it differ from rayctl
unless `--sanitize` (the default) applies rayctl's documented row rules first:
vast.ai's `SpotPrice` 0.00 rows (SkyPilot picks them as $0/h spot offers) are
blanked, and duplicate rows for one (instance type, zone) are merged (SkyPilot asserts
on them, e.g. AWS p4de.24xlarge in use1-az6).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def install_catalog(src: Path, home: Path, sanitize: bool = True) -> list[str]:
    clouds = []
    for d in sorted(src.iterdir()):
        f = d / "vms.csv"
        if not f.is_file() or d.name == "simplepod":  # SkyPilot 0.14.1 has no simplepod cloud
            continue
        dst = home / ".sky" / "catalogs" / "v8" / d.name
        dst.mkdir(parents=True, exist_ok=True)
        if not sanitize:
            shutil.copy(f, dst / "vms.csv")
        else:
            rows = list(csv.reader(open(f, newline="", encoding="utf-8")))
            header, body = rows[0], rows[1:]
            pi = [header.index(c) for c in ("Price", "SpotPrice") if c in header]
            key = [header.index(c) for c in ("InstanceType", "AcceleratorName", "AcceleratorCount", "Region",
                                             "AvailabilityZone") if c in header]
            merged: dict = {}
            for r in body:
                for i in pi:
                    if r[i] != "" and float(r[i]) <= 0:
                        r[i] = ""
                k = tuple(r[i] for i in key)
                if k in merged:
                    old = merged[k]
                    for i in pi:
                        vals = [float(x) for x in (old[i], r[i]) if x != ""]
                        old[i] = repr(min(vals)) if vals else ""
                else:
                    merged[k] = r
            with open(dst / "vms.csv", "w", newline="", encoding="utf-8") as out:
                w = csv.writer(out)
                w.writerow(header)
                w.writerows(merged.values())
        clouds.append(d.name)
    names: dict = {}
    for c in clouds:
        for row in csv.DictReader(open(src / c / "vms.csv", newline="", encoding="utf-8")):
            if row.get("AcceleratorName"):
                names.setdefault(row["AcceleratorName"], set()).add(c)
    common = home / ".sky" / "catalogs" / "v8" / "common"
    common.mkdir(parents=True, exist_ok=True)
    with open(common / "accelerators.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["AcceleratorName", "Clouds"])
        for n, cs in sorted(names.items()):
            w.writerow([n, str(sorted(cs))])
    (common / "metadata.csv").write_text("AcceleratorName,Manufacturer,MemoryGB\n")
    return clouds


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--raw", action="store_true", help="do not sanitize rows (see module doc)")
    ap.add_argument("--clouds", default="", help="comma-separated clouds to enable (default: all in catalog)")
    ap.add_argument("cases", nargs="+", help="NAME:COUNT:spot|on-demand")
    a = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="rayctl-sky-home-"))
    os.environ["HOME"] = str(home)
    os.environ.pop("SKY_RUNTIME_DIR", None)
    clouds = install_catalog(Path(a.catalog), home, sanitize=not a.raw)
    if a.clouds:
        clouds = [c for c in clouds if c in a.clouds.split(",")]
    t0 = time.perf_counter()
    import sky
    import sky.check
    from sky import optimizer
    from sky.utils import registry

    import_s = time.perf_counter() - t0
    enabled = [registry.CLOUD_REGISTRY.from_str(c) for c in clouds]
    sky.check.get_cached_enabled_clouds_or_refresh = lambda *x, **k: enabled
    sky.check.check = lambda *x, **k: None
    results = []
    first_optimize_s = None
    for case in a.cases:
        name, count, mode = case.rsplit(":", 2)
        t1 = time.perf_counter()
        with sky.Dag() as dag:
            task = sky.Task(run="true")
            task.set_resources(sky.Resources(accelerators=f"{name}:{count}", use_spot=(mode == "spot")))
        devnull = open(os.devnull, "w")
        old = sys.stdout
        sys.stdout = devnull  # SkyPilot prints progress payloads on stdout
        try:
            dag = optimizer.Optimizer.optimize(dag, quiet=True)
            r = dag.tasks[0].best_resources
            res = {"case": case, "cloud": str(r.cloud).lower(), "region": r.region, "zone": r.zone,
                   "instance_type": r.instance_type, "hourly_usd_per_node": round(r.get_cost(3600), 6)}
        except Exception as e:  # report, do not crash the comparison
            res = {"case": case, "error": f"{type(e).__name__}: {str(e)[:200]}"}
        finally:
            sys.stdout = old
        dt = time.perf_counter() - t1
        res["optimize_s"] = round(dt, 4)
        if first_optimize_s is None:
            first_optimize_s = dt
        results.append(res)
    shutil.rmtree(home, ignore_errors=True)
    print(json.dumps({"import_s": round(import_s, 4), "first_optimize_s": round(first_optimize_s or 0, 4),
                      "clouds": clouds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
