"""Load task YAMLs with SkyPilot's own loader and run its optimizer, in-process, offline.

Usage: python sky_inprocess.py HOME CATALOG_DIR CLOUDS YAML...

Run as a subprocess (SkyPilot reads HOME at import). Sets up HOME/.sky/catalogs/v8 from
CATALOG_DIR (SkyPilot's vms.csv layout per cloud) plus the two `common/` files SkyPilot
otherwise downloads, enables CLOUDS (comma-separated) the way SkyPilot's own test
fixtures do (monkeypatching `sky.check.get_cached_enabled_clouds_or_refresh` and
`sky.check.check`), never starts the API server, and prints one JSON line per YAML:
{"file", "ok", "error", "resources": [ordered infra...], "best": {...}}.
"""

import json
import os
import shutil
import sys
import time


def main():
    home, catalog, clouds, files = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4:]
    os.environ["HOME"] = home
    os.environ["SKYPILOT_DISABLE_USAGE_COLLECTION"] = "1"
    v8 = os.path.join(home, ".sky", "catalogs", "v8")
    for c in os.listdir(catalog):
        src = os.path.join(catalog, c, "vms.csv")
        if os.path.isfile(src):
            os.makedirs(os.path.join(v8, c), exist_ok=True)
            shutil.copy(src, os.path.join(v8, c, "vms.csv"))
    os.makedirs(os.path.join(v8, "common"), exist_ok=True)
    with open(os.path.join(v8, "common", "accelerators.csv"), "w") as f:
        f.write("AcceleratorName,Clouds\n")
    with open(os.path.join(v8, "common", "metadata.csv"), "w") as f:
        f.write("AcceleratorName,Manufacturer,MemoryGB\n")
    now = time.time()
    for root, _dirs, names in os.walk(v8):
        for n in names:
            os.utime(os.path.join(root, n), (now, now))  # fresh: SkyPilot does not try to re-download

    import sky
    import sky.check
    from sky import clouds as sky_clouds
    from sky import optimizer
    from sky.utils import registry

    known = set(registry.CLOUD_REGISTRY)
    enabled = [registry.CLOUD_REGISTRY.from_str(c) for c in clouds if c in known]
    sky.check.get_cached_enabled_clouds_or_refresh = lambda *a, **k: enabled
    sky.check.check = lambda *a, **k: None
    del sky_clouds
    for f in files:
        out = {"file": f, "ok": False}
        try:
            task = sky.Task.from_yaml(f)
            out["resources"] = [str(r) for r in task.resources]
            out["num_nodes"] = task.num_nodes
            out["ok"] = True
            if os.environ.get("RAYCTL_TEST_OPTIMIZE"):
                with sky.Dag() as dag:
                    dag.add(task)
                optimizer.Optimizer.optimize(dag, quiet=True)
                b = task.best_resources
                out["best"] = {"cloud": str(b.cloud).lower(), "region": b.region, "zone": b.zone,
                               "instance_type": b.instance_type, "use_spot": b.use_spot}
        except BaseException as e:  # report, do not die: one JSON line per file
            out["error"] = f"{type(e).__name__}: {e}"[:2000]
        print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
