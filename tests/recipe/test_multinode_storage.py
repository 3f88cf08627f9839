"""Multi-node train/tune on a cluster that is not this machine need storage every node reaches:
a local checkpoint/storage path is refused (exit 2, file:line, field, "use s3:// or gs://") at
`validate`/`plan` when the recipe names its target, and at `launch --target` — through the real CLI."""

from __future__ import annotations

import pytest

from tests.conftest import assert_no_traceback

TRAIN = """\
name: mn
kind: train
resources:
  nodes: {nodes}
target: {target}
workload:
  workers: 2
{storage}"""

TUNE = """\
name: mn
kind: tune
resources:
  nodes: {nodes}
target: {target}
workload:
  param_space: {{lr: {{loguniform: [0.001, 0.1]}}}}
{storage}"""


def write(tmp_path, template, *, nodes=2, target="cloud", storage=None):
    p = tmp_path / "recipe.yaml"
    p.write_text(template.format(nodes=nodes, target=target,
                                 storage=f"  storage: {storage}\n" if storage else ""))
    return p


@pytest.mark.parametrize("template", [TRAIN, TUNE], ids=["train", "tune"])
@pytest.mark.parametrize("target", ["cloud", "http://ray:secret@10.0.0.1:8265"])
def test_local_storage_refused_for_multinode_remote(cli, tmp_path, template, target):
    p = write(tmp_path, template, target=target, storage="./ckpt")
    for cmd in ("validate", "plan"):
        r = cli(cmd, p)
        assert r.code == 2, r
        assert_no_traceback(r)
        assert f"{p}:8:12: field 'workload.storage'" in r.err, r.err
        assert "'./ckpt' is a local path" in r.err and "resources.nodes: 2" in r.err
        assert "s3://" in r.err and "gs://" in r.err
        assert "secret" not in r.err  # the target's credentials are never echoed


def test_unset_storage_defaults_to_local_and_is_refused(cli, tmp_path):
    p = write(tmp_path, TRAIN, target="http://10.0.0.1:8265")
    r = cli("validate", p)
    assert r.code == 2, r
    assert f"{p}:7:3: field 'workload'" in r.err and "storage is not set" in r.err, r.err


@pytest.mark.parametrize("nodes,target,storage", [
    (2, "cloud", "s3://bucket/ckpt"),
    (2, "http://10.0.0.1:8265", "gs://bucket/ckpt"),
    (2, "local", "./ckpt"),        # every local node shares this machine's disk
    (1, "cloud", "./ckpt"),        # one node: its own disk is enough
])
def test_fine_combinations(cli, tmp_path, nodes, target, storage):
    r = cli("validate", write(tmp_path, TRAIN, nodes=nodes, target=target, storage=storage))
    assert r.code == 0, r


def test_launch_target_flag_checks_the_target_it_names(cli, tmp_path):
    """The recipe is fine where it says it runs (local); `launch --target URL` is refused before anything starts."""
    p = write(tmp_path, TRAIN, target="local", storage="/tmp/ckpt")
    assert cli("validate", p).code == 0
    r = cli("launch", p, "--target", "http://127.0.0.1:9")  # nothing listens there: refused before any connection
    assert r.code == 2, r
    assert_no_traceback(r)
    assert f"{p}:8:12: field 'workload.storage'" in r.err and "s3://" in r.err, r.err
    assert "cannot reach" not in r.err


@pytest.mark.parametrize("target,output,code", [("cloud", "./out", 2), ("local", "./out", 0),
                                                ("cloud", "s3://bucket/out", 0)])
def test_batch_infer_output_on_several_remote_nodes_must_be_shared(cli, tmp_path, target, output, code):
    """Replicas write from every node: a local output folder on a multi-node remote cluster is refused."""
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    p = tmp_path / "recipe.yaml"
    p.write_text(f"name: mn\nkind: batch-infer\nresources:\n  nodes: 2\ntarget: {target}\n"
                 f"workload:\n  input: prompts.jsonl\n  output: {output}\n")
    r = cli("validate", p)
    assert r.code == code, r
    assert_no_traceback(r)
    if code:
        assert f"{p}:8:11: field 'workload.output'" in r.err, r.err
        assert "its share of the results" in r.err and "s3://" in r.err
