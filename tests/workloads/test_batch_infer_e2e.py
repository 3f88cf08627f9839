"""batch-infer end to end on a real Ray cluster: files in, model over batches, files out."""

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]


def read_rows(folder: Path, fmt: str) -> list[dict]:
    import pandas as pd

    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    assert files, f"no files in {folder}"
    if fmt == "jsonl":
        return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
    if fmt == "parquet":
        return pd.concat([pd.read_parquet(f) for f in files]).to_dict("records")
    return pd.concat([pd.read_csv(f) for f in files]).to_dict("records")


def assert_counts_match(job, rows):
    assert job.metrics["rows"] == len(rows)
    assert job.metrics["input_tokens"] == sum(int(r["input_tokens"]) for r in rows)
    assert job.metrics["output_tokens"] == sum(int(r["output_tokens"]) for r in rows)
    assert all(0 < int(r["output_tokens"]) <= 32 for r in rows)
    assert all(isinstance(r["generated_text"], str) for r in rows)


@pytest.mark.timeout(300)
def test_shipped_recipe_jsonl_in_jsonl_out(launch, repo, tmp_path):
    out = tmp_path / "out"
    job = launch(repo / "recipes" / "batch-infer.yaml", "bi-shipped", {"output": str(out)})
    assert job.status == "SUCCEEDED", job.logs[-4000:]
    rows = read_rows(out, "jsonl")
    prompts = [json.loads(x) for x in (repo / "examples/data/prompts.jsonl").read_text().splitlines()]
    assert len(rows) == len(prompts) == 200
    assert sorted(r["id"] for r in rows) == list(range(200))
    by_id = {r["id"]: r for r in rows}
    assert all(by_id[p["id"]]["prompt"] == p["prompt"] for p in prompts)
    # The byte-level tokenizer: one token per UTF-8 byte of the prompt.
    assert all(by_id[p["id"]]["input_tokens"] == len(p["prompt"].encode()) for p in prompts)
    assert_counts_match(job, rows)
    assert job.metrics["output"] == str(out) and job.metrics["engine"] == "transformers"
    assert job.metrics["nodes_used"] == 1
    done = [e["done"] for e in job.progress if e["unit"] == "rows"]
    assert done == sorted(done) and done[-1] == 200
    assert all(e["total"] == 200 for e in job.progress)


@pytest.mark.timeout(300)
def test_csv_in_parquet_out_two_replicas(launch, repo, tmp_path):
    import pandas as pd

    src = tmp_path / "prompts.csv"
    df = pd.read_json(repo / "examples/data/prompts.jsonl", lines=True).head(60)
    df = df.rename(columns={"prompt": "text"})
    df.to_csv(src, index=False)
    recipe = tmp_path / "bi.yaml"
    recipe.write_text("name: bi-csv\nkind: batch-infer\nworkload:\n  input: prompts.csv\n  output: results\n"
                      "  output_format: parquet\n  prompt_column: text\n  concurrency: 2\n  batch_size: 8\n"
                      "  max_new_tokens: 16\n")
    job = launch(recipe, "bi-csv")
    assert job.status == "SUCCEEDED", job.logs[-4000:]
    rows = read_rows(tmp_path / "results", "parquet")
    assert len(rows) == 60 and {r["text"] for r in rows} == set(df["text"])
    assert job.metrics["rows"] == 60
    assert job.metrics["output_tokens"] == sum(int(r["output_tokens"]) for r in rows)
    assert "2 replica(s) x 0.5 CPU" in job.logs  # sized so Ray Data's own tasks still fit on 2 CPUs


@pytest.mark.timeout(300)
def test_s3_parquet_in_csv_out(launch, repo, tmp_path, s3_endpoint):
    import io

    import boto3
    import pandas as pd

    df = pd.read_json(repo / "examples/data/prompts.jsonl", lines=True).head(40)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    s3 = boto3.client("s3")
    s3.put_object(Bucket="rayctl-test", Key="in/prompts.parquet", Body=buf.getvalue())
    recipe = tmp_path / "bi.yaml"
    env = "".join(f"    {k}: '{v}'\n" for k, v in s3_endpoint.items())
    recipe.write_text("name: bi-s3\nkind: batch-infer\nworkload:\n  input: s3://rayctl-test/in/prompts.parquet\n"
                      "  output: s3://rayctl-test/out/\n  output_format: csv\n  limit: 25\n  max_new_tokens: 8\n"
                      f"  env:\n{env}")
    job = launch(recipe, "bi-s3")
    assert job.status == "SUCCEEDED", job.logs[-4000:]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="rayctl-test", Prefix="out/")["Contents"]]
    rows = pd.concat([pd.read_csv(io.BytesIO(s3.get_object(Bucket="rayctl-test", Key=k)["Body"].read()))
                      for k in keys if k.endswith(".csv")])
    assert len(rows) == 25 == job.metrics["rows"]
    assert job.metrics["output"] == "s3://rayctl-test/out/"
    assert job.metrics["input_tokens"] == int(rows["input_tokens"].sum())


@pytest.mark.timeout(180)
def test_missing_prompt_column_fails_with_a_clear_message(launch, repo, tmp_path):
    job = launch(repo / "recipes" / "batch-infer.yaml", "bi-badcol",
                 {"output": str(tmp_path / "o"), "prompt_column": "question"})
    assert job.status == "FAILED"
    assert "input has no column 'question' (columns: id, prompt)" in job.logs


@pytest.mark.timeout(120)
def test_replicas_that_can_never_fit_fail_fast_instead_of_hanging(launch, repo, tmp_path):
    job = launch(repo / "recipes" / "batch-infer.yaml", "bi-toobig",
                 {"output": str(tmp_path / "o"), "num_cpus": 2, "concurrency": 1})
    assert job.status == "FAILED"
    assert "needs 3 CPU and 0 GPU but the whole cluster has 2 CPU" in job.logs
    assert job.metrics["error"].startswith("batch inference with 1 replica(s)")
    assert job.seconds < 60


@pytest.mark.timeout(120)
def test_vllm_without_vllm_fails_with_what_to_do(launch, repo, tmp_path):
    job = launch(repo / "recipes" / "batch-infer.yaml", "bi-vllm", {"output": str(tmp_path / "o"), "engine": "vllm"})
    assert job.status == "FAILED"
    assert "rayctl: workload error: engine vllm needs the vllm package on the cluster" in job.logs
    assert job.seconds < 60


@pytest.mark.timeout(600)
def test_output_folder_keeps_what_rayctl_did_not_write(launch, repo, tmp_path):
    """Replace only manifested files; a failed run leaves the previous results; the job refuses foreign files."""
    from rayctl.workloads import output as O

    parent = tmp_path / "data"
    parent.mkdir()
    (parent / "keep.txt").write_text("above the folder")
    out = parent / "out"
    small = {"output": str(out), "limit": 12, "batch_size": 6, "max_new_tokens": 4}

    def state():
        return {p.name: p.read_bytes() for p in out.iterdir()}

    first = launch(repo / "recipes" / "batch-infer.yaml", "bi-own-1", small)
    assert first.status == "SUCCEEDED", first.logs[-4000:]
    m1 = json.loads((out / O.MANIFEST).read_text())
    names = sorted(p.name for p in out.iterdir() if p.name != O.MANIFEST)
    assert names and all(n.endswith(".jsonl") for n in names), names  # JSONL output files end in .jsonl
    assert (m1["recipe"], m1["run_id"], sorted(m1["files"])) == ("demo-batch-infer", "bi-own-1", names)
    assert len(read_rows(out, "jsonl")) == 12 == first.metrics["rows"]

    second = launch(repo / "recipes" / "batch-infer.yaml", "bi-own-2", small)  # overwrite: true (default)
    assert second.status == "SUCCEEDED", second.logs[-4000:]
    m2 = json.loads((out / O.MANIFEST).read_text())
    assert m2["run_id"] == "bi-own-2" and not set(m2["files"]) & set(names)  # replaced, not added to
    assert sorted(p.name for p in out.iterdir()) == sorted([O.MANIFEST, *m2["files"]])
    assert len(read_rows(out, "jsonl")) == 12

    before = state()
    failed = launch(repo / "recipes" / "batch-infer.yaml", "bi-own-3", {**small, "prompt_column": "question"})
    assert failed.status == "FAILED"
    assert state() == before  # previous results and manifest intact, no staging folder left

    (out / "notes.md").write_text("the user's")
    refused = launch(repo / "recipes" / "batch-infer.yaml", "bi-own-4", small)  # the job checks too
    assert refused.status == "FAILED"
    assert f"holds {out / 'notes.md'}, which rayctl did not write" in refused.logs
    assert state() == {**before, "notes.md": b"the user's"}
    assert sorted(p.name for p in parent.iterdir()) == ["keep.txt", "out"]
    assert (parent / "keep.txt").read_text() == "above the folder"
