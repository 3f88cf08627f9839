"""`rayctl validate` on built-in workload sections: strict, with file:line:column and field.

Each case runs the real CLI as a subprocess. The shipped recipes must validate and plan.
"""

import re
import textwrap

import pytest

from tests.conftest import assert_no_traceback


CASES = [
    # (kind, workload YAML (indented under 'workload:'), line, column, field, message fragment)
    ("train", "workerz: 2", 5, 3, "workload.workerz", "did you mean 'workers'?"),
    ("train", "use_gpu: maybe", 5, 12, "workload.use_gpu", "not one of: auto, true, false"),
    ("train", "epochs: 0", 5, 11, "workload.epochs", "must be >= 1"),
    ("train", "cpus_per_worker: -1", 5, 20, "workload.cpus_per_worker", "must be > 0"),
    ("train", "working_dir: ./src", 5, 3, "workload.working_dir", "needs 'entrypoint'"),
    ("train", "env: {A: [1]}", 5, 12, "workload.env.A", "environment values are strings"),
    ("tune", "num_samples: 2", 5, 3, "workload", "required field 'param_space'"),
    ("tune", "param_space:\n  lr: {loguniform: [0, 0.1]}", 6, 22, "workload.param_space.lr.loguniform",
     "low > 0"),
    ("tune", "param_space:\n  hiden: {choice: [32, 64]}", 6, 5, "workload.param_space.hiden",
     "did you mean 'hidden'?"),
    ("tune", "param_space:\n  lr: {loguniorm: [0.001, 0.1]}", 6, 10, "workload.param_space.lr.loguniorm",
     "did you mean 'loguniform'?"),
    ("tune", "param_space: {lr: 0.01}\nmetric: accuracy\nmode: min", 7, 9, "workload.mode",
     "did you mean mode: max?"),
    ("tune", "param_space: {lr: 0.01}\nmetrc: accuracy", 6, 3, "workload.metrc", "did you mean 'metric'?"),
    ("batch-infer", "input: a.jsonl", 5, 3, "workload", "required field 'output'"),
    ("batch-infer", "input: a.jsonl\noutput: out\nbatch_size: 0", 7, 15, "workload.batch_size", "must be >= 1"),
    ("batch-infer", "input: a.jsonl\noutput: out\nconcurrency: [3, 1]", 7, 16, "workload.concurrency",
     "[min, max]"),
    ("batch-infer", "input: a.jsonl\noutput: out\nengine: vlm", 7, 11, "workload.engine", "did you mean 'vllm'?"),
    ("batch-infer", "input: prompts.txt\noutput: out", 5, 10, "workload.input", "cannot tell the format"),
    ("batch-infer", "input: a.jsonl\noutput: out\nengine: transformers\nengine_kwargs: {x: 1}", 8, 18,
     "workload.engine_kwargs", "vLLM engine arguments"),
    ("batch-infer", "input: a.jsonl\noutput: out\nengine: http", 5, 3, "workload", "needs 'endpoint'"),
    ("batch-infer", "input: a.jsonl\noutput: out\nengine: http\nendpoint: https://x.example/v1/chat/completions",
     8, 13, "workload.endpoint", "is a route"),
    ("batch-infer", "input: a.jsonl\noutput: out\nengine: vllm\napi_key_env: OPENAI_API_KEY", 8, 3,
     "workload.api_key_env", "a key of engine http"),
    ("batch-infer", "input: a.jsonl\noutput: out\nengine: http\nendpoint: run:x\napi_key_env: 'my key'", 9, 16,
     "workload.api_key_env", "environment variable name"),
    ("serve", "replicas: 2\nautoscaling: {min_replicas: 1, max_replicas: 3}", 6, 3, "workload.autoscaling",
     "either replicas or autoscaling"),
    ("serve", "autoscaling: {min_replicas: 1, max_replica: 3}", 5, 34, "workload.autoscaling.max_replica",
     "did you mean 'max_replicas'?"),
    ("serve", "route_prefix: v1", 5, 17, "workload.route_prefix", "starts with '/'"),
    ("serve", "max_tokens: 900", 5, 15, "workload.max_tokens", "above max_tokens_limit"),
    ("serve", "num_gpus: lots", 5, 13, "workload.num_gpus", "expected auto or a number >= 0"),
    ("serve", "engine: transformers\nengine_kwargs: {max_model_len: 4096}", 6, 18, "workload.engine_kwargs",
     "vLLM engine arguments"),
]


def _recipe(tmp_path, kind, body):
    text = f"name: t\nkind: {kind}\ntarget: local\nworkload:\n" + textwrap.indent(body, "  ") + "\n"
    p = tmp_path / f"{kind}.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("kind, body, line, col, fld, fragment", CASES,
                         ids=[f"{c[0]}-{c[4]}" for c in CASES])
def test_bad_workload_section_is_exit_2_with_line_and_field(cli, tmp_path, kind, body, line, col, fld, fragment):
    p = _recipe(tmp_path, kind, body)
    r = cli("validate", p)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"{p}:{line}:{col}: field '{fld}':" in r.err, r.err
    assert fragment in r.err, r.err


def test_every_problem_in_a_section_is_listed(cli, tmp_path):
    p = _recipe(tmp_path, "train", "workerz: 2\nepochs: 0\nlr: fast")
    r = cli("validate", p, "--json")
    assert r.code == 2, r
    import json

    problems = json.loads(r.out)["files"][0]["problems"]
    assert {x["field"] for x in problems} == {"workload.workerz", "workload.epochs", "workload.lr"}
    assert all(x["line"] for x in problems)


def test_user_code_workloads_are_left_to_the_launch_side(cli, tmp_path):
    (tmp_path / "src").mkdir()
    p = _recipe(tmp_path, "train", "entrypoint: python train.py --epochs 3\nworking_dir: ./src")
    r = cli("validate", p)
    assert r.code == 0, r


@pytest.mark.parametrize("kind", ["train", "tune", "batch-infer", "serve"])
def test_empty_or_minimal_sections_use_defaults(cli, tmp_path, kind):
    body = {"train": "epochs: 1", "tune": "param_space: {lr: {loguniform: [0.001, 0.1]}}",
            "batch-infer": "input: data/prompts.jsonl\noutput: out/", "serve": "replicas: 1"}[kind]
    r = cli("validate", _recipe(tmp_path, kind, body))
    assert r.code == 0, r


def test_shipped_recipes_validate_and_plan(cli, repo, shared_catalog):
    recipes = sorted((repo / "recipes").glob("*.yaml"))
    names = {p.name for p in recipes}
    assert {"train.yaml", "tune.yaml", "batch-infer.yaml", "serve.yaml"} <= names
    r = cli("validate", *recipes)
    assert r.code == 0, r
    r = cli("plan", *recipes, "--catalog", shared_catalog, "--json")
    assert r.code == 0, r
    import json

    plans = json.loads(r.out)["plans"]
    assert len(plans) == len(recipes)
    for plan in plans:
        assert plan["chosen"], plan
        assert re.match(r"^(L4|A100|A10G|T4|H100)", plan["chosen"]["accelerator"]), plan["chosen"]


def test_validate_and_plan_do_not_import_heavy_libraries(repo):
    import subprocess
    import sys

    code = ("import sys\nfrom rayctl import recipe\n"
            "for f in ('train','tune','batch-infer','serve'):\n"
            f"    recipe.load({str(repo)!r} + '/recipes/' + f + '.yaml')\n"
            "print(sorted(m for m in ('ray','torch','transformers','pandas','numpy','pyarrow','tokenizers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
