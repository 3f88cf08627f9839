"""rayctl's chosen $/h equals SkyPilot's own optimizer's, run in-process and offline
on the same catalog (SkyPilot gets the catalog with rayctl's documented row rules
applied: $0 prices blanked, duplicate rows merged; see benchmarks/skypilot_optimizer.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

CASES = [f"{s}:{m}" for s in ("A100:1", "A100:8", "A100-80GB:8", "H100:1", "H100:8", "L4:1")
         for m in ("spot", "on-demand")]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_same_hourly_price_as_skypilot_optimizer(cli, tmp_path, shared_catalog):
    pytest.importorskip("sky")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "skypilot_optimizer.py"),
                           "--catalog", str(shared_catalog), *CASES],
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sky = {r["case"]: r for r in json.loads(proc.stdout)["results"]}
    for case in CASES:
        name, count, mode = case.rsplit(":", 2)
        recipe = tmp_path / f"{name}-{count}-{mode}.yaml"
        recipe.write_text(f"name: cmp\nkind: train\nresources:\n  accelerators: {name}:{count}\n"
                          f"  spot: {'true' if mode == 'spot' else 'false'}\n")
        r = cli("plan", recipe, "--catalog", shared_catalog, "--json", "--top", "1")
        assert r.code == 0, r
        ours = json.loads(r.out)["chosen"]
        assert "error" not in sky[case], sky[case]
        assert ours["hourly_usd_per_node"] == pytest.approx(sky[case]["hourly_usd_per_node"], abs=1e-6), case
