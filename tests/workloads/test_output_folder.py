"""The output rule without Ray: rayctl only deletes files it wrote (manifest + staging).

Pure logic of rayctl.workloads.output on tmp folders, the client's pre-flight refusal
through `rayctl launch` (exit 2 before any cluster starts), and the same logic on a
local S3 (moto) through pyarrow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayctl.workloads import output as O


def tree(root: Path) -> dict:
    """Every file under root (relative path -> bytes), to prove what was or was not touched."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def publish(folder: Path, files: dict, *, recipe="r", run_id="run1", overwrite=True, rename=None) -> O.Publisher:
    pub = O.Publisher(str(folder), recipe=recipe, kind="batch-infer", run_id=run_id, overwrite=overwrite,
                      rename=rename)
    staging = Path(pub.begin())
    for name, data in files.items():
        (staging / name).write_text(data)
    pub.commit()
    return pub


def manifest(folder: Path) -> dict:
    return json.loads((folder / O.MANIFEST).read_text())


def test_first_run_publishes_files_directly_with_a_manifest(tmp_path):
    out = tmp_path / "results"
    pub = publish(out, {"a_000.json": "1\n", "a_001.json": "2\n"}, rename=O.jsonl_name)
    assert sorted(p.name for p in out.iterdir()) == [O.MANIFEST, "a_000.jsonl", "a_001.jsonl"]
    m = manifest(out)
    assert (m["recipe"], m["run_id"], m["files"]) == ("r", "run1", ["a_000.jsonl", "a_001.jsonl"])
    assert "state" not in m and m["written_at"].endswith("Z")
    assert pub.files == [str(out / "a_000.jsonl"), str(out / "a_001.jsonl")]


def test_overwrite_replaces_only_the_manifested_files(tmp_path):
    out = tmp_path / "results"
    publish(out, {"old1.csv": "x", "old2.csv": "y"}, run_id="run1")
    publish(out, {"new1.csv": "z"}, run_id="run2")
    assert sorted(p.name for p in out.iterdir()) == [O.MANIFEST, "new1.csv"]
    assert manifest(out)["files"] == ["new1.csv"] and manifest(out)["run_id"] == "run2"
    # A file of the same name is replaced in place.
    publish(out, {"new1.csv": "again"}, run_id="run3")
    assert (out / "new1.csv").read_text() == "again" and manifest(out)["files"] == ["new1.csv"]


def test_a_foreign_file_refuses_the_folder_and_is_untouched(tmp_path):
    out = tmp_path / "results"
    publish(out, {"a.csv": "x"})
    (out / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    with pytest.raises(O.Refused) as e:
        publish(out, {"b.csv": "y"}, run_id="run2")
    assert e.value.entry == str(out / "notes.txt") and "notes.txt" in str(e.value)
    assert tree(tmp_path) == before  # nothing written, nothing deleted, no staging folder left


@pytest.mark.parametrize("make", [
    lambda d: (d / "sub").mkdir(),  # a folder
    lambda d: (d / "a.csv").mkdir(),  # a folder where the manifest lists a file
    lambda d: (d / "link").symlink_to("/"),  # a link
    lambda d: (d / O.MANIFEST).write_text('{"recipe": "r", "files": ["../../etc/passwd"]}'),  # escapes the folder
    lambda d: (d / O.MANIFEST).write_text("not json"),
])
def test_anything_rayctl_did_not_write_is_foreign(tmp_path, make):
    out = tmp_path / "results"
    out.mkdir()
    make(out)
    with pytest.raises(O.Refused):
        O.check_folder(O.LocalFS(), str(out), recipe="r", overwrite=True)


def test_overwrite_false_refuses_any_non_empty_folder(tmp_path):
    out = tmp_path / "results"
    publish(out, {"a.csv": "x"})
    with pytest.raises(O.Refused, match=r"is not empty \(it holds .*a.csv\) and workload.overwrite is false"):
        publish(out, {"b.csv": "y"}, run_id="run2", overwrite=False)
    assert sorted(p.name for p in out.iterdir()) == [O.MANIFEST, "a.csv"]
    empty = tmp_path / "empty"
    empty.mkdir()
    publish(empty, {"b.csv": "y"}, overwrite=False)  # an empty (or missing) folder is fine
    assert (empty / "b.csv").is_file()


def test_another_recipes_results_are_refused(tmp_path):
    out = tmp_path / "results"
    publish(out, {"a.csv": "x"}, recipe="nightly")
    with pytest.raises(O.Refused, match="results of recipe 'nightly'"):
        publish(out, {"b.csv": "y"}, recipe="other")
    assert (out / "a.csv").read_text() == "x"


def test_abort_leaves_the_previous_results_and_manifest(tmp_path):
    out = tmp_path / "results"
    publish(out, {"a.csv": "x"})
    before = tree(tmp_path)
    pub = O.Publisher(str(out), recipe="r", kind="batch-infer", run_id="run2", overwrite=True)
    staging = Path(pub.begin())
    assert staging.parent == out and staging.name.startswith(".rayctl-staging-")
    (staging / "half.csv").write_text("partial")
    pub.abort()
    assert tree(tmp_path) == before and not staging.exists()
    # A run that created the folder and failed leaves no folder behind.
    fresh = tmp_path / "fresh" / "out"
    pub = O.Publisher(str(fresh), recipe="r", kind="batch-infer", run_id="run3", overwrite=True)
    pub.begin()
    pub.abort()
    assert not fresh.exists() and (tmp_path / "fresh").is_dir()


def test_commit_checks_again_and_never_overwrites_a_file_that_appeared(tmp_path):
    out = tmp_path / "results"
    publish(out, {"a.csv": "x"})
    pub = O.Publisher(str(out), recipe="r", kind="batch-infer", run_id="run2", overwrite=True)
    staging = Path(pub.begin())
    (staging / "b.csv").write_text("new")
    (out / "b.csv").write_text("the user's, written meanwhile")
    with pytest.raises(O.Refused, match="b.csv"):
        pub.commit()
    pub.abort()
    assert (out / "b.csv").read_text() == "the user's, written meanwhile"
    assert (out / "a.csv").read_text() == "x" and manifest(out)["files"] == ["a.csv"]


def test_a_leftover_staging_folder_is_not_foreign(tmp_path):
    out = tmp_path / "results"
    publish(out, {"a.csv": "x"})
    (out / ".rayctl-staging-killed").mkdir()
    (out / ".rayctl-staging-killed" / "part.csv").write_text("p")
    publish(out, {"b.csv": "y"}, run_id="run2")
    assert (out / ".rayctl-staging-killed" / "part.csv").is_file()  # another run's: not ours to delete
    assert sorted(manifest(out)["files"]) == ["b.csv"]


def test_nothing_above_the_folder_is_touched(tmp_path):
    parent = tmp_path / "data"
    parent.mkdir()
    (parent / "keep.txt").write_text("k")
    out = parent / "results"
    publish(out, {"a.csv": "x"})
    # A manifest claiming a file above the folder is refused, never followed.
    m = manifest(out)
    m["files"].append("../keep.txt")
    (out / O.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(O.Refused, match="not a manifest rayctl wrote"):
        publish(out, {"b.csv": "y"}, run_id="run2")
    assert (parent / "keep.txt").read_text() == "k"
    # The folder itself being `..`-ish (a home or /) with other files is refused.
    with pytest.raises(O.Refused):
        O.check_folder(O.LocalFS(), str(parent), recipe="r", overwrite=True)


def test_experiment_folders(tmp_path):
    storage = tmp_path / "ckpt"
    fs = O.LocalFS()
    O.claim_experiment(str(storage), "exp", recipe="r", kind="train", run_id="r1")
    m = manifest(storage / "exp")
    assert (m["recipe"], m["kind"], m["files"], m["managed_by"]) == ("r", "train", [], "ray")
    (storage / "exp" / "checkpoint_000").mkdir()  # Ray Train's own
    O.claim_experiment(str(storage), "exp", recipe="r", kind="train", run_id="r2")  # resume: fine
    assert (storage / "exp" / "checkpoint_000").is_dir() and manifest(storage / "exp")["run_id"] == "r2"
    with pytest.raises(O.Refused, match="belongs to recipe 'r'"):
        O.check_experiment(fs, str(storage), "exp", recipe="other")
    (storage / "photos").mkdir()
    (storage / "photos" / "cat.jpg").write_text("meow")
    with pytest.raises(O.Refused, match="cat.jpg, which rayctl did not write"):
        O.claim_experiment(str(storage), "photos", recipe="photos", kind="train", run_id="r1")
    assert sorted(p.name for p in (storage / "photos").iterdir()) == ["cat.jpg"]


def test_launch_refuses_a_folder_with_a_foreign_file_before_any_cluster(cli, tmp_path, rayctl_home):
    out = tmp_path / "results"
    out.mkdir()
    (out / "report.xlsx").write_text("the user's own file")
    recipe = tmp_path / "bi.yaml"
    recipe.write_text("name: bi\nkind: batch-infer\nworkload:\n  input: prompts.jsonl\n  output: results\n")
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    res = cli("launch", recipe, timeout=120)
    assert res.code == 2, res
    assert "Traceback" not in res.err
    assert f"{recipe}:5:11: field 'workload.output'" in res.err, res.err
    assert str(out / "report.xlsx") in res.err and "which rayctl did not write" in res.err
    assert (out / "report.xlsx").read_text() == "the user's own file"
    assert sorted(p.name for p in out.iterdir()) == ["report.xlsx"]
    assert not (rayctl_home / "clusters").exists()  # no local cluster was started


def test_launch_refuses_overwrite_false_and_a_foreign_experiment_folder(cli, tmp_path, rayctl_home):
    out = tmp_path / "results"
    publish(out, {"a.jsonl": "{}\n"}, recipe="bi")
    recipe = tmp_path / "bi.yaml"
    recipe.write_text("name: bi\nkind: batch-infer\nworkload:\n  input: p.jsonl\n  output: results\n"
                      "  overwrite: false\n")
    res = cli("launch", recipe, timeout=120)
    assert res.code == 2 and "overwrite is false" in res.err and "field 'workload.output'" in res.err, res
    (tmp_path / "ckpt" / "tr").mkdir(parents=True)
    (tmp_path / "ckpt" / "tr" / "thesis.tex").write_text("x")
    recipe = tmp_path / "tr.yaml"
    recipe.write_text("name: tr\nkind: train\nworkload:\n  storage: ckpt\n")
    res = cli("launch", recipe, timeout=120)
    assert res.code == 2 and "field 'workload.storage'" in res.err and "thesis.tex" in res.err, res
    assert not (rayctl_home / "clusters").exists()


def test_s3_folder_keeps_foreign_keys(s3_endpoint):
    import boto3

    s3 = boto3.client("s3")
    url = "s3://rayctl-test/res"
    fs = O.filesystem(url)

    def run(files: dict, run_id: str):
        pub = O.Publisher(url, recipe="r", kind="batch-infer", run_id=run_id, overwrite=True, rename=O.jsonl_name)
        staging = pub.begin()
        for name, data in files.items():
            fs.write_atomic(fs.join(staging, name), data.encode())
        return pub.commit()

    def keys():
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="rayctl-test", Prefix="res/").get("Contents", []))

    assert run({"a.json": "1\n"}, "run1") == ["s3://rayctl-test/res/a.jsonl"]
    run({"b.json": "2\n"}, "run2")
    assert [k for k in keys() if not k.endswith("/")] == ["res/.rayctl-manifest.json", "res/b.jsonl"]
    s3.put_object(Bucket="rayctl-test", Key="res/user.csv", Body=b"mine")
    with pytest.raises(O.Refused, match="res/user.csv"):
        run({"c.json": "3\n"}, "run3")
    assert "res/user.csv" in keys() and "res/b.jsonl" in keys()
    assert not any(".rayctl-staging-run3" in k for k in keys())
