"""The user-code job spec (contract 1), built from real recipe files."""

from __future__ import annotations

import pytest

from rayctl import recipe as recipe_mod
from rayctl.errors import RecipeError
from rayctl.workloads import JobSpec, job_spec


def _load(tmp_path, text: str):
    p = tmp_path / "sub" / "r.yaml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(text)
    return recipe_mod.load(p)


def test_user_code_spec(tmp_path):
    (tmp_path / "sub" / "code").mkdir(parents=True)
    (tmp_path / "sub" / "reqs.txt").write_text("requests\n")
    r = _load(tmp_path, "name: r\nkind: train\nresources: {cpus: 2+}\nworkload:\n"
                        "  entrypoint: python train.py --epochs 3\n  working_dir: code\n  pip: reqs.txt\n"
                        "  env: {A: 1, B: true, C: x}\n  entrypoint_num_cpus: 0.5\n")
    spec = job_spec(r, "run-1")
    assert isinstance(spec, JobSpec)
    assert spec.entrypoint == "python train.py --epochs 3"
    assert spec.runtime_env["working_dir"] == str(tmp_path / "sub" / "code")  # relative to the recipe file
    assert spec.runtime_env["pip"] == str(tmp_path / "sub" / "reqs.txt")
    assert spec.runtime_env["env_vars"] == {"A": "1", "B": "true", "C": "x", "RAYCTL_RUN_ID": "run-1"}
    assert (spec.entrypoint_num_cpus, spec.entrypoint_num_gpus) == (0.5, 0.0)
    assert (spec.needs_cpus, spec.needs_gpus) == (2.0, 0.0)
    assert spec.detached is False and spec.metadata["rayctl_workload"] == "user"


def test_user_code_needs_gpus_from_accelerators_and_serve_detaches(tmp_path):
    r = _load(tmp_path, "name: s\nkind: serve\nresources: {accelerators: 'A100:2'}\n"
                        "workload:\n  entrypoint: python app.py\n  pip: [vllm]\n")
    spec = job_spec(r, "run-2")
    assert spec.needs_gpus == 2 and spec.detached is True
    assert spec.runtime_env["pip"] == ["vllm"] and "working_dir" not in spec.runtime_env


def test_missing_working_dir_points_at_the_line(tmp_path):
    r = _load(tmp_path, "name: r\nkind: tune\nworkload:\n  entrypoint: python x.py\n  working_dir: ../nope\n")
    with pytest.raises(RecipeError) as e:
        job_spec(r, "run-3")
    assert e.value.problems[0].line == 5 and e.value.problems[0].field == "workload.working_dir"
