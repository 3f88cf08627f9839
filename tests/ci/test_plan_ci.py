"""The CI flow on the test catalog (tests/data/catalog): many recipes planned at once, deterministic JSON,
the budget gate (exit 3, one line per recipe), and `plan --diff` after a price change."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import pytest

from tests.conftest import assert_no_traceback

from .conftest import OVER_BUDGET, RECIPES

pytestmark = pytest.mark.timeout(180)


def files(recipes):
    return sorted(recipes.glob("*.yaml"))


def bump_price(catalog, cloud: str, instance: str, region: str, delta: float) -> int:
    """Add `delta` to the on-demand price of every row of one instance type in one region."""
    path = catalog / cloud / "vms.csv"
    lines = path.read_text().splitlines(keepends=True)
    header = next(csv.reader([lines[0]]))
    ip, ii, ir = header.index("Price"), header.index("InstanceType"), header.index("Region")
    changed = 0
    for n, line in enumerate(lines[1:], start=1):
        row = next(csv.reader([line]))
        if row and row[ii] == instance and row[ir] == region:
            row[ip] = f"{float(row[ip]) + delta:.6f}"
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow(row)
            lines[n] = buf.getvalue()
            changed += 1
    path.write_text("".join(lines))
    return changed


def test_plan_json_is_byte_identical_across_runs(cli, recipes, catalog):
    args = ["plan", *files(recipes), "--json", "--catalog", catalog]
    runs = [cli(*args, env={"PYTHONHASHSEED": str(seed)}) for seed in (1, 2, 3)]
    for r in runs:
        assert r.code == 3, r
    assert runs[0].out == runs[1].out == runs[2].out
    doc = json.loads(runs[0].out)
    assert [d.get("recipe") for d in doc["plans"]] == ["llm-a", "train-b", "tune-c", "nightly-d", "serve-e"]
    assert [d["file"] for d in doc["plans"]] == [str(f) for f in files(recipes)]
    assert all(d["catalog"]["as_of"] == "2025-01-15" for d in doc["plans"] if "catalog" in d)


def test_plans_keep_argument_order(cli, recipes, catalog):
    fwd = json.loads(cli("plan", *files(recipes), "--json", "--catalog", catalog).out)["plans"]
    rev = json.loads(cli("plan", *reversed(files(recipes)), "--json", "--catalog", catalog).out)["plans"]
    assert rev == list(reversed(fwd))


def test_budget_gate_exit_3_with_one_line_per_recipe(cli, recipes, catalog):
    r = cli("plan", *files(recipes), "--json", "--catalog", catalog)
    assert r.code == 3, r
    assert_no_traceback(r)
    errors = [ln for ln in r.err.splitlines() if ln.startswith("rayctl: error:")]
    assert len(errors) == len(OVER_BUDGET)
    for name, line in zip(OVER_BUDGET, errors):
        assert str(recipes / name) in line and "no offer fits the budget" in line
    assert len(r.err.splitlines()) == len(errors) + sum(ln.startswith("rayctl: warning:") for ln in r.err.splitlines())
    docs = {d["file"]: d for d in json.loads(r.out)["plans"]}
    for name in OVER_BUDGET:
        d = docs[str(recipes / name)]
        assert d["error"]["exit_code"] == 3 and d["recipe"] in ("train-b", "serve-e")
    for name in set(RECIPES) - set(OVER_BUDGET):
        assert "chosen" in docs[str(recipes / name)]

    # --budget applies to every recipe: all of them fail, one line each
    r = cli("plan", *files(recipes), "--catalog", catalog, "--budget", "0.01")
    assert r.code == 3, r
    assert len([ln for ln in r.err.splitlines() if ln.startswith("rayctl: error:")]) == len(RECIPES)

    # within budget: exit 0
    ok = [recipes / n for n in RECIPES if n not in OVER_BUDGET]
    assert cli("plan", *ok, "--json", "--catalog", catalog).code == 0


def test_an_invalid_recipe_outranks_the_budget_gate(cli, recipes, catalog):
    (recipes / "z-bad.yaml").write_text("name: bad\nkind: train\nresources:\n  accelerators: H100:0\n")
    r = cli("plan", *files(recipes), "--json", "--catalog", catalog)
    assert r.code == 2, r
    bad = json.loads(r.out)["plans"][-1]
    assert bad["file"].endswith("z-bad.yaml") and bad["error"]["problems"][0]["line"] == 4


def test_price_change_shows_in_the_diff(cli, recipes, catalog, tmp_path):
    old = tmp_path / "old.json"
    r = cli("plan", *files(recipes), "--json", "--catalog", catalog)
    old.write_text(r.out)
    chosen = {d["recipe"]: d["chosen"] for d in json.loads(r.out)["plans"] if "chosen" in d}
    c = chosen["nightly-d"]
    assert (c["cloud"], c["instance_type"], c["region"], c["hourly_usd"]) == ("aws", "g4dn.xlarge", "us-east-1", 0.526)
    assert bump_price(catalog, "aws", "g4dn.xlarge", "us-east-1", 0.1) >= 1

    md = cli("plan", *files(recipes), "--catalog", catalog, "--diff", old)
    assert md.code == 3, md  # the gate still applies
    assert_no_traceback(md)
    assert md.out.startswith("### rayctl plan\n")
    assert "**5 recipes**: 1 changed, 2 still failing, 2 unchanged · total estimate" in md.out
    row = next(ln for ln in md.out.splitlines() if ln.startswith("| nightly-d |"))
    # nightly-d is batch-infer: ranked per token by default, so its $/1M output tokens moves with the price
    # (T4 has no published figure: scaled from the A100-80GB one by memory bandwidth)
    assert row == ("| nightly-d | price, per-token, estimate | aws g4dn.xlarge T4:1 on-demand | us-east-1/use1-az1 | "
                   "$0.5260 → **$0.6260** (+19.0%) | $0.2253 → **$0.2681** (+19.0%) | $2.10 → **$2.50** (+$0.40) for 4 h |")
    assert "| recipe | change | offer | region | $/h | $/1M out tok | estimate |" in md.out
    assert "<details><summary>2 unchanged</summary>" in md.out

    js = cli("plan", *files(recipes), "--catalog", catalog, "--diff", old, "--json")
    doc = json.loads(js.out)
    assert doc["summary"] == {"changed": 1, "added": 0, "removed": 0, "failing": 0, "fixed": 0,
                              "still-failing": 2, "unchanged": 2}
    d = next(x for x in doc["recipes"] if x["recipe"] == "nightly-d")
    assert d["change"] == "changed" and d["fields"] == ["price", "per-token", "estimate"]
    assert (d["old"]["hourly_usd"], d["new"]["hourly_usd"]) == (0.526, 0.626)
    assert doc["total_estimate_usd"]["delta"] == 0.4
    # the diff is as deterministic as the plan
    assert cli("plan", *files(recipes), "--catalog", catalog, "--diff", old, "--json").out == js.out

    # a big enough rise moves the recipe to another offer
    bump_price(catalog, "aws", "g4dn.xlarge", "us-east-1", 10)
    doc = json.loads(cli("plan", *files(recipes), "--catalog", catalog, "--diff", old, "--json").out)
    d = next(x for x in doc["recipes"] if x["recipe"] == "nightly-d")
    assert "offer" in d["fields"] and d["new"]["instance_type"] != "g4dn.xlarge"


def test_hourly_objective_diff_is_unchanged_from_before_per_token(cli, recipes, catalog, tmp_path):
    """With --objective hourly, plans and their diff are what they were before the per-token objective."""
    old = tmp_path / "old.json"
    r = cli("plan", *files(recipes), "--json", "--catalog", catalog, "--objective", "hourly")
    old.write_text(r.out)
    for d in json.loads(r.out)["plans"]:
        if "chosen" in d:
            assert d["objective"] == "hourly" and "usd_per_1m_output_tokens" not in d["chosen"]
            assert "throughput" not in d
    bump_price(catalog, "aws", "g4dn.xlarge", "us-east-1", 0.1)
    md = cli("plan", *files(recipes), "--catalog", catalog, "--diff", old, "--objective", "hourly")
    row = next(ln for ln in md.out.splitlines() if ln.startswith("| nightly-d |"))
    assert row == ("| nightly-d | price, estimate | aws g4dn.xlarge T4:1 on-demand | us-east-1/use1-az1 | "
                   "$0.5260 → **$0.6260** (+19.0%) | $2.10 → **$2.50** (+$0.40) for 4 h |")
    assert "$/1M out tok" not in md.out


def test_diff_of_recipes_added_removed_and_fixed(cli, recipes, catalog, tmp_path):
    old = tmp_path / "old.json"
    old.write_text(cli("plan", *files(recipes), "--json", "--catalog", catalog).out)
    (recipes / "a-llm.yaml").unlink()
    (recipes / "f-new.yaml").write_text("name: new-f\nkind: train\nresources:\n  accelerators: T4:1\n")
    b = recipes / "b-train.yaml"
    b.write_text(b.read_text().replace("max_usd: 5", "max_usd: 500"))
    doc = json.loads(cli("plan", *files(recipes), "--catalog", catalog, "--diff", old, "--json").out)
    change = {x["recipe"]: x["change"] for x in doc["recipes"]}
    assert change == {"train-b": "fixed", "tune-c": "unchanged", "nightly-d": "unchanged",
                      "serve-e": "still-failing", "new-f": "added", "llm-a": "removed"}
    assert [x["recipe"] for x in doc["recipes"]][-1] == "llm-a"  # removed ones come last
    md = cli("plan", *files(recipes), "--catalog", catalog, "--diff", old).out
    assert "| new-f | added | aws g4dn.xlarge T4:1 on-demand |" in md
    assert "| llm-a | removed | ~~" in md
    assert "| train-b | now plans | error: no offer fits the budget" in md


def test_no_change_says_so(cli, recipes, catalog, tmp_path):
    ok = [recipes / n for n in RECIPES if n not in OVER_BUDGET]
    old = tmp_path / "old.json"
    old.write_text(cli("plan", *ok, "--json", "--catalog", catalog).out)
    r = cli("plan", *ok, "--catalog", catalog, "--diff", old)
    assert r.code == 0, r
    assert "No plan changed." in r.out and "(no change)" in r.out
    one = tmp_path / "one.json"  # a single-recipe plan (a bare plan object) diffs too
    one.write_text(cli("plan", ok[0], "--json", "--catalog", catalog).out)
    assert "No plan changed." in cli("plan", ok[0], "--catalog", catalog, "--diff", one).out


@pytest.mark.parametrize("content,needle", [
    (None, "no such file (expected the output of `rayctl plan --json`)"),
    ('{"plans": [\n  {"recipe": "x",\n  oops}\n]}', ":3:3: not valid JSON"),
    ('{"hello": "world"}', "not a `rayctl plan --json` output"),
    ('{"plans": [1, 2]}', "not a `rayctl plan --json` output"),
    (b"\xff\xfe{}", "not UTF-8 text"),
])
def test_bad_old_plan_is_exit_2(cli, recipes, catalog, tmp_path, content, needle):
    old = tmp_path / "old.json"
    if isinstance(content, bytes):
        old.write_bytes(content)
    elif content is not None:
        old.write_text(content)
    r = cli("plan", *files(recipes), "--catalog", catalog, "--diff", old)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert r.out == ""
    assert r.err.startswith(f"rayctl: error: --diff {old}") and needle in r.err, r.err


def test_plan_and_diff_import_no_heavy_library(recipes, catalog, tmp_path, rayctl_home):
    old = tmp_path / "old.json"
    old.write_text('{"plans": []}')
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "rayctl", "plan", *map(str, files(recipes)),
                           "--catalog", str(catalog), "--diff", str(old)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3, proc.stderr[-2000:]
    imported = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")}
    heavy = {m for m in imported if re.match(r"^(ray|sky|boto3|botocore|torch|pandas|croniter)(\.|$)", m)}
    assert heavy == set()


@pytest.mark.parametrize("bad, what", [
    ('"hourly_usd": NaN', "'NaN' is not a JSON number"),
    ('"hourly_usd": "abc"', "'chosen.hourly_usd' is 'abc', not a finite number"),
    ('"hourly_usd": 1e999', "not a finite number"),
])
def test_diff_against_a_damaged_plan_file_is_input_error(cli, recipes, catalog, tmp_path, bad, what):
    """An old plan file with NaN, a string or an overflowing number where a price goes used to end
    in `internal error` (exit 1); it is bad input, named, exit 2."""
    old = tmp_path / "old.json"
    r = cli("plan", *files(recipes), "--json", "--catalog", catalog)
    old.write_text(re.sub(r'"hourly_usd": [0-9.]+', bad, r.out, count=1))
    md = cli("plan", *files(recipes), "--catalog", catalog, "--diff", old, "--json")
    assert md.code == 2, md
    assert_no_traceback(md)
    assert f"--diff {old}" in md.err and what in md.err


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_plan_into_a_closed_pipe_exits_0(repo, shared_catalog, extra):
    """`rayctl plan | head -1`: the reader going away is not a failure (exit 0, nothing on stderr),
    whether click or rich meets the EPIPE."""
    proc = subprocess.Popen([sys.executable, "-m", "rayctl", "plan", str(repo / "recipes" / "train.yaml"),
                             "--catalog", str(shared_catalog), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(20)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert "error" not in err.lower() and "pipe" not in err.lower() and "Traceback" not in err, err
