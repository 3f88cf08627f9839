"""Every bad recipe gives one readable message naming file, line, column and field,
exit code 2, and no traceback — checked through the real CLI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_no_traceback

GOOD = """\
name: nightly-embed
kind: batch-infer
resources:
  accelerators: H100:8
  nodes: 1
  spot: true
budget: {max_usd: 50, max_hours: 4}
workload: {input: prompts.jsonl, output: out/}
"""


def write(tmp_path, text, name="recipe.yaml", raw: bytes | None = None):
    p = tmp_path / name
    if raw is not None:
        p.write_bytes(raw)
    else:
        p.write_text(text)
    return p


def check(cli, path, *needles, cmd="validate"):
    r = cli(cmd, path)
    assert r.code == 2, r
    assert_no_traceback(r)
    for n in needles:
        assert n in r.err, (n, r.err)
    return r


def test_good_recipe_validates(cli, tmp_path):
    r = cli("validate", write(tmp_path, GOOD))
    assert r.code == 0, r
    assert "ok" in r.out and "batch-infer" in r.out


@pytest.mark.parametrize("text,needles", [
    # malformed YAML: unclosed flow mapping
    ("name: x\nkind: train\nresources: {accelerators: H100:8\n", ["recipe.yaml:4:1", "invalid YAML"]),
    # bad indentation
    ("name: x\n kind: train\n", ["recipe.yaml:2:", "invalid YAML"]),
    # wrong type
    ("name: x\nkind: train\nresources:\n  nodes: eight\n", ["recipe.yaml:4:10", "resources.nodes",
                                                            "expected a whole number", "eight"]),
    ("name: x\nkind: train\nresources:\n  nodes: 1.5\n", ["resources.nodes", "whole number"]),
    ("name: x\nkind: train\nresources: [H100]\n", ["recipe.yaml:3:12", "field 'resources'", "expected a mapping"]),
    # unknown kind with suggestion
    ("name: x\nkind: trian\n", ["recipe.yaml:2:7", "field 'kind'", "trian", "did you mean 'train'"]),
    # unknown accelerator: says which exist
    ("name: x\nkind: train\nresources:\n  accelerators: H10:8\n", ["recipe.yaml:4:17", "resources.accelerators",
                                                                  "unknown accelerator 'H10'", "H100", "Known:"]),
    ("name: x\nkind: train\nresources:\n  accelerators: [H100:8, A100-80G8:8]\n",
     ["resources.accelerators[1]", "A100-80G8"]),
    # bad counts
    ("name: x\nkind: train\nresources:\n  accelerators: H100:0\n", ["resources.accelerators", "count", ">= 1"]),
    ("name: x\nkind: train\nresources:\n  accelerators: H100:1.5\n", ["whole number"]),
    ("name: x\nkind: train\nresources:\n  accelerators: H100:999\n", ["at most 64"]),
    ("name: x\nkind: train\nresources:\n  accelerators: 'H100:eight'\n", ["not an accelerator spec"]),
    ("name: x\nkind: train\nresources:\n  nodes: 0\n", ["resources.nodes", "must be >= 1"]),
    # unknown keys with did-you-mean
    ("name: x\nkind: train\nresources:\n  acelerators: H100:8\n", ["recipe.yaml:4:3", "unknown field 'acelerators'",
                                                                  "did you mean 'accelerators'"]),
    ("name: x\nkind: train\nbudjet: {max_usd: 5}\n", ["recipe.yaml:3:1", "did you mean 'budget'"]),
    # spot must be a boolean or auto
    ("name: x\nkind: train\nresources: {spot: sometimes}\n", ["resources.spot", "sometimes"]),
    # missing required fields
    ("kind: train\n", ["required field 'name' is missing"]),
    ("name: Bad_Name\nkind: train\n", ["field 'name'", "lower-case"]),
    # list where a mapping belongs (root)
    ("- name: x\n- kind: train\n", ["recipe.yaml:1:1", "mapping", "holds a list"]),
    ("just a string\n", ["mapping", "single value"]),
    # budget negative
    ("name: x\nkind: train\nbudget: {max_usd: -5}\n", ["budget.max_usd", "must be > 0"]),
    # duplicate keys
    ("name: x\nkind: train\nname: y\n", ["recipe.yaml:3:1", "appears twice"]),
    # several documents
    ("name: x\nkind: train\n---\nname: y\n", ["more than one YAML document"]),
    # bad target
    ("name: x\nkind: train\ntarget: mars\n", ["field 'target'", "mars"]),
])
def test_bad_recipes(cli, tmp_path, text, needles):
    check(cli, write(tmp_path, text), *needles)


def test_empty_file(cli, tmp_path):
    check(cli, write(tmp_path, ""), "recipe.yaml", "empty")
    check(cli, write(tmp_path, "# only a comment\n", name="c.yaml"), "c.yaml", "empty")


def test_non_utf8_bytes(cli, tmp_path):
    p = write(tmp_path, None, raw=b"name: x\nkind: train\n# caf\xe9\n")
    check(cli, p, "recipe.yaml:3:6", "0xe9", "UTF-8")


def test_billion_laughs_alias_bomb_is_refused_quickly(cli, tmp_path):
    lines = ["name: x", "kind: train", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("workload: {bomb: *a9}")
    r = check(cli, write(tmp_path, "\n".join(lines) + "\n"), "alias", "refusing")
    assert r.err.count("\n") <= 3


def test_deep_nesting(cli, tmp_path):
    check(cli, write(tmp_path, "name: x\nkind: train\nworkload: " + "[" * 5000 + "]" * 5000 + "\n"),
          "nest")


def test_huge_file(cli, tmp_path):
    check(cli, write(tmp_path, "name: x\nkind: train\n" + "# padding\n" * 200_000), "larger than")


def test_missing_file_and_directory(cli, tmp_path):
    check(cli, tmp_path / "nope.yaml", "nope.yaml", "no such file")
    check(cli, tmp_path, "directory")


def test_validate_many_files_reports_each(cli, tmp_path):
    good = write(tmp_path, GOOD, "good.yaml")
    bad1 = write(tmp_path, "name: x\nkind: nope\n", "bad1.yaml")
    bad2 = write(tmp_path, "name: x\nkind: train\nresources: {nodes: -1}\n", "bad2.yaml")
    r = cli("validate", good, bad1, bad2)
    assert r.code == 2
    assert_no_traceback(r)
    assert "ok    " in r.out and "good.yaml" in r.out
    assert "bad1.yaml:2:7" in r.err and "bad2.yaml:3:20" in r.err
    assert "2 of 3 recipe(s) invalid" in r.err
    j = cli("validate", good, bad1, "--json")
    doc = json.loads(j.out)
    assert j.code == 2 and doc["valid"] == 1 and doc["invalid"] == 1
    assert doc["files"][1]["problems"][0]["line"] == 2 and doc["files"][1]["problems"][0]["field"] == "kind"


def test_every_problem_is_reported_not_just_the_first(cli, tmp_path):
    r = check(cli, write(tmp_path, "name: x\nkind: trian\nresources: {nodes: 0, spot: maybe}\n"),
              "field 'kind'", "resources.nodes", "resources.spot")
    assert r.err.count("recipe.yaml:") == 3


def test_plan_reports_recipe_errors_too(cli, tmp_path, shared_catalog):
    r = cli("plan", write(tmp_path, "name: x\nkind: train\nresources: {accelerators: Z9:1}\n"),
            "--catalog", shared_catalog)
    assert r.code == 2 and "unknown accelerator 'Z9'" in r.err
    assert_no_traceback(r)


def test_bad_flags(cli, tmp_path, shared_catalog):
    p = write(tmp_path, GOOD)
    for args, needle in [(["--budget", "-3"], "--budget"), (["--hours", "0"], "--hours"),
                         (["--top", "0"], "--top"), (["--catalog", str(tmp_path / "none")], "no such directory"),
                         (["--frobnicate"], "No such option")]:
        r = cli("plan", p, *args)
        assert r.code == 2, (args, r)
        assert needle in r.err, (args, r.err)
        assert_no_traceback(r)


def test_schema_is_valid_json_schema_and_accepts_good_recipes(cli, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    r = cli("recipe", "schema")
    assert r.code == 0
    schema = json.loads(r.out)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(GOOD), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "kind": "train", "bogus": 1}, schema)


def test_bad_schedule_is_a_recipe_error(cli, tmp_path):
    check(cli, write(tmp_path, "name: x\nkind: batch-infer\nschedule: '0 25 * * *'\n"),
          "recipe.yaml:3:11", "field 'schedule'", "hour")
    r = cli("validate", write(tmp_path, "name: x\nkind: batch-infer\nschedule: '@daily'\n"
                                "workload: {input: p.jsonl, output: out/}\n", "ok.yaml"))
    assert r.code == 0, r
