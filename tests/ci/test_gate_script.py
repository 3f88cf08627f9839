"""examples/ci: the gate script end to end on the test catalog (tests/data/catalog), and the workflow file's shape."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from .test_plan_ci import bump_price

pytestmark = pytest.mark.timeout(300)


def gate(repo, recipes, catalog, base=None, out="out"):
    env = dict(os.environ, RAYCTL=f"{sys.executable} -m rayctl", RAYCTL_RECIPES=str(recipes),
               RAYCTL_CI_OUT=out, HOME=str(recipes.parent))
    env.pop("RAYCTL_HOME", None)
    args = ["bash", str(repo / "examples" / "ci" / "plan-gate.sh"), str(catalog)] + ([str(base)] if base else [])
    return subprocess.run(args, cwd=recipes.parent, env=env, capture_output=True, text=True, timeout=240)


def test_gate_end_to_end(repo, recipes, catalog):
    work = recipes.parent
    p = gate(repo, recipes, catalog)
    assert p.returncode == 3, p
    assert "Traceback" not in p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("rayctl: error:")]
    assert len(errors) == 2 and all("no offer fits the budget" in ln for ln in errors)
    assert "would add nightly-d (0 2 * * *)" in p.stdout  # the schedule check ran
    plan = (work / "out" / "plan.json").read_bytes()
    assert len(json.loads(plan)["plans"]) == 5
    md = (work / "out" / "plan.md").read_text()
    assert md.startswith("<!-- rayctl-plan -->\n### rayctl plan\n")
    assert "**5 recipes**: 5 added · total estimate $0.00 → " in md  # no base: every recipe is new
    assert "| train-b | added, fails | error: no offer fits the budget" in md
    assert "| nightly-d | added | aws g4dn.xlarge T4:1 on-demand |" in md
    assert "**Over budget or no feasible offer** (exit 3):" in md
    assert md.count("\n- ") == 2

    # same inputs: the same bytes, and a comment that says nothing changed
    shutil.copy(work / "out" / "plan.json", work / "base-plan.json")
    p = gate(repo, recipes, catalog, base=work / "base-plan.json")
    assert p.returncode == 3, p
    assert (work / "out" / "plan.json").read_bytes() == plan
    assert "2 still failing, 3 unchanged" in (work / "out" / "plan.md").read_text()

    # a price change in the pinned catalog: the comment shows it
    bump_price(catalog, "aws", "g4dn.xlarge", "us-east-1", 0.1)
    p = gate(repo, recipes, catalog, base=work / "base-plan.json")
    assert p.returncode == 3, p
    md = (work / "out" / "plan.md").read_text()
    # nightly-d is batch-infer, ranked per token by default: its $/1M output tokens moves with the price
    assert "| nightly-d | price, per-token, estimate |" in md and "$0.5260 → **$0.6260** (+19.0%)" in md
    assert "$0.2253 → **$0.2681** (+19.0%)" in md

    # within budget everywhere: exit 0
    for name in ("b-train.yaml", "e-serve.yaml"):
        (recipes / name).unlink()
    p = gate(repo, recipes, catalog, base=work / "base-plan.json")
    assert p.returncode == 0, p
    assert "Over budget" not in (work / "out" / "plan.md").read_text()


@pytest.mark.parametrize("bad,code,needle", [
    ('name: bad\nkind: train\nresources: {accelerators: "H100:0"}\n', 2, "field 'resources.accelerators'"),
    ('name: bad\nkind: train\nschedule: "0 2 * * 8"\nresources: {accelerators: T4:1}\n', 2,
     "field 'schedule': '0 2 * * 8' is not a cron expression cron can run: day-of-week field: 8"),
])
def test_gate_stops_on_invalid_input(repo, recipes, catalog, bad, code, needle):
    (recipes / "z-bad.yaml").write_text(bad)
    p = gate(repo, recipes, catalog)
    assert p.returncode == code, p
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert not (recipes.parent / "out" / "plan.md").exists()


def test_gate_with_a_damaged_base_plan_is_exit_2(repo, recipes, catalog):
    (recipes.parent / "base.json").write_text("{not json")
    p = gate(repo, recipes, catalog, base=recipes.parent / "base.json")
    assert p.returncode == 2, p
    assert "not valid JSON" in p.stderr


def test_workflow_file_is_consistent(repo):
    wf = yaml.safe_load((repo / "examples" / "ci" / "github-actions.yml").read_text())
    steps = wf["jobs"]["plan"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    for script in runs:  # every shell step parses
        subprocess.run(["bash", "-n"], input=script, text=True, check=True, timeout=30)
    text = "\n".join(runs)
    for path in re.findall(r"examples/ci/[\w.-]+", text):
        assert (repo / path).is_file(), path
    assert re.fullmatch(r"[0-9a-f]{40}\n", (repo / "examples" / "ci" / "catalog-ref").read_text())
    assert "plan-gate.sh" in text and "--body-file .rayctl-ci/plan.md" in text
    assert wf["permissions"]["pull-requests"] == "write"


def test_example_recipes_validate_and_plan_within_budget(cli, repo, shared_catalog):
    recipes = sorted((repo / "recipes").glob("*.yaml"))
    assert any(p.name == "nightly-batch-infer.yaml" for p in recipes)
    r = cli("validate", *recipes)
    assert r.code == 0, r
    r = cli("plan", repo / "recipes" / "nightly-batch-infer.yaml", "--json", "--catalog", shared_catalog)
    assert r.code == 0, r
    assert json.loads(r.out)["chosen"]["accelerator"] == "L4"


def test_nightly_example_script_runs_and_reports(tmp_path, repo):
    out = tmp_path / "scores.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    p = subprocess.run([sys.executable, "batch_infer.py", "--rows", "600", "--batch-size", "250", "--output", str(out)],
                       cwd=repo / "examples" / "nightly-batch", env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p
    lines = [json.loads(ln.split(" ", 1)[1]) for ln in p.stdout.splitlines() if ln.startswith("::rayctl:: ")]
    assert [x["done"] for x in lines if x["type"] == "progress"] == [250, 500, 600]
    metrics = lines[-1]
    assert metrics["type"] == "metrics" and metrics["rows"] == 600 and metrics["output"] == str(out)
    rows = out.read_text().splitlines()
    assert len(rows) == 600 and json.loads(rows[0])["id"] == 0
