"""One definition of a recipe: the JSON Schema in rayctl.recipe.schema plus each kind's
workload fields from rayctl.recipe.kinds, run by the jsonschema library.

Also the import direction: rayctl.recipe -> rayctl.recipe.kinds (stdlib only);
rayctl.workloads never imports the launcher side, and validation needs no runner module.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

from rayctl.recipe import schema
from rayctl.recipe.yamlsafe import Located
from rayctl.recipe import kinds as spec


def _py(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_workloads_never_import_the_launcher_side():
    got = _py("import sys\n"
              "import rayctl.workloads, rayctl.recipe.kinds\n"
              "from rayctl.workloads import train, tune, batch_infer, serve, common\n"
              "print(sorted(m for m in sys.modules if m.split('.')[:2] in (['rayctl', 'cli'], ['rayctl', 'runs'],"
              " ['rayctl', 'planning'], ['rayctl', 'providers'], ['rayctl', 'schedule'], ['rayctl', 'cost'])"
              " or m == 'jsonschema'))")
    assert got == "[]"


def test_validation_needs_no_runner_module_nor_registration():
    got = _py("import sys\n"
              "from rayctl import recipe\n"
              "try:\n"
              "    recipe.loads(b'name: x\\nkind: train\\nworkload: {workerz: 2}\\n')\n"
              "except recipe.RecipeError as e:\n"
              "    print(e.problems[0].message)\n"
              "print(sorted(m for m in sys.modules if m.startswith('rayctl.workloads.')\n"
              "             and m.split('.')[2] in ('train', 'tune', 'batch_infer', 'serve', 'common', 'demo_model')))")
    assert "did you mean 'workers'?" in got
    assert got.endswith("[]"), got


def _problems(value: dict) -> list:
    return [(p.field, p.message) for p in schema.validate(Located(value, {}, {}))]


@pytest.mark.parametrize("doc, field", [
    ({"name": "x", "kind": "train", "resources": {"max_hourly_usd": float("nan")}}, "resources.max_hourly_usd"),
    ({"name": "x", "kind": "train", "budget": {"max_usd": float("inf")}}, "budget.max_usd"),
    ({"name": "x", "kind": "train", "resources": {"prefer_within_pct": float("-inf")}}, "resources.prefer_within_pct"),
    ({"name": "x", "kind": "train", "workload": {"lr": float("inf")}}, "workload.lr"),
    ({"name": "x", "kind": "serve", "workload": {"num_gpus": float("nan")}}, "workload.num_gpus"),
    ({"name": "x", "kind": "tune", "workload": {"param_space": {"lr": {"uniform": [0.1, float("inf")]}}}},
     "workload.param_space.lr.uniform[1]"),
])
def test_nan_and_infinity_are_refused(doc, field):
    probs = _problems(doc)
    assert any(f == field and "finite" in m for f, m in probs), probs


def test_whole_numbers_are_ints_not_floats():
    assert _problems({"name": "x", "kind": "train", "resources": {"nodes": 2.0}}) == [
        ("resources.nodes", "expected a whole number, got number 2.0")]


def test_objective_and_compare_to():
    assert _problems({"name": "x", "kind": "batch-infer", "resources": {"objective": "per-token"},
                      "compare_to": ["gpt-4o-mini"], "workload": {"input": "a.jsonl", "output": "o"}}) == []
    probs = _problems({"name": "x", "kind": "train", "resources": {"objective": "cheap"}, "compare_to": "gpt-4o"})
    assert ("resources.objective", "string 'cheap' is not one of: per-token, hourly") in probs
    assert ("compare_to", "expected a list, got string 'gpt-4o'") in probs


def test_printed_schema_holds_every_kind_workload_fields(cli, repo):
    r = cli("recipe", "schema")
    assert r.code == 0
    printed = json.loads(r.out)
    assert printed == json.loads(json.dumps(schema.SCHEMA))
    jsonschema.Draft202012Validator.check_schema(printed)
    v = jsonschema.Draft202012Validator(printed)
    text = json.dumps(printed)
    for kind, mod in spec.KINDS.items():
        assert all(f'"{k}"' in text for k in mod.FIELDS), kind

    def ok(doc):
        return not list(v.iter_errors(doc))

    assert ok({"name": "x", "kind": "train", "workload": {"workers": 2, "env": {"A": "1"}}})
    assert not ok({"name": "x", "kind": "train", "workload": {"workerz": 2}})
    assert not ok({"name": "x", "kind": "batch-infer", "workload": {"input": "a.jsonl"}})
    assert not ok({"name": "x", "kind": "tune"})  # param_space is required
    assert ok({"name": "x", "kind": "tune", "workload": {"entrypoint": "python tune.py", "pip": ["x"]}})
    assert not ok({"name": "x", "kind": "serve", "workload": {"entrypoint": "python s.py", "replicas": 2}})
    assert not ok({"name": "x", "kind": "serve", "workload": {"autoscaling": {"min_replicas": 1}}})
    for p in sorted((repo / "recipes").glob("*.yaml")):
        assert ok(yaml.safe_load(p.read_text())), p


def test_runner_defaults_are_the_schema_defaults():
    for kind, mod in spec.KINDS.items():
        wl = spec.with_defaults({}, mod.FIELDS)
        section = schema.SCHEMA["allOf"][list(spec.KINDS).index(kind)]["then"]["properties"]["workload"]["else"]
        assert wl == {k: f.get("default") for k, f in section["properties"].items()}, kind
