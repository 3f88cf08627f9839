"""Built-in `batch-infer` workload: Ray Data reads prompts, a model completes them, Ray
Data writes the results.

* input: JSONL, Parquet or CSV (a file or a folder; local path or s3://...). Paths
  relative to the recipe file are resolved when the job is built.
* engine `transformers` (CPU, or one GPU per replica when the cluster has them): a
  callable class holds the model
  (`from_pretrained`) in each of `concurrency` actors and completes `batch_size` prompts
  per call with `generate()`. Engines `vllm` and `sglang` hand the same rows to Ray Data's
  LLM processor (`ray.data.llm`) on GPU clusters; `http` sends each prompt to an
  OpenAI-compatible endpoint (a managed API or a rayctl serve run) through Ray Data's
  HTTP processor (see `llm_engines.py`). `auto` picks vllm when the cluster has GPUs and
  vllm is installed, else transformers.
* output: a folder of JSONL/Parquet/CSV files holding every input column plus
  `generated_text`, `input_tokens` and `output_tokens`.

Progress (rows) is reported while it runs; the final metrics (rows, input_tokens,
output_tokens, output) are counted from the files written, so a retried batch is never
counted twice. A pipeline that makes no progress for `stall_timeout_s` fails with a
message instead of hanging.

This module holds the settings, the job spec and the Ray Data pipeline (read, generate,
write, count); the model replicas and engine choice are in `batch_engines.py`, the stall
watchdog in `batch_watch.py`.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from .. import protocol
from . import common, demo_model, output
from . import llm_engines
from .batch_engines import TASK_CPUS, auto_concurrency, build_transformers, counter_class, pick_engine, replicas
from .batch_watch import root_cause, watch
from ..recipe.kinds.batch_infer import EXT as _EXT, FIELDS, FORMATS, KIND  # noqa: F401  (the one definition)
from ..recipe.kinds.batch_infer import format_of as _format_of, looks_like_dir as _looks_like_dir  # noqa: F401


def settings(recipe) -> dict:
    wl = common.with_defaults(recipe.workload, FIELDS)
    base = common.recipe_dir(recipe)
    wl["input"] = common.resolve_path(wl["input"], base)
    wl["output"] = common.resolve_path(wl["output"], base)
    if wl["engine"] != "http":  # engine http: the name the endpoint expects, never a path
        wl["model"] = demo_model.resolve(wl["model"], base)
    wl["concurrency_set"] = "concurrency" in (recipe.workload or {})
    if wl["input_format"] == "auto":
        wl["input_format"] = _format_of(wl["input"]) or "auto"
    return wl


def job_spec(recipe, run_id: str):
    wl = settings(recipe)
    lo, _ = replicas(wl["concurrency"])
    cpus = wl["num_cpus"] if wl["num_cpus"] is not None else 0.5
    if wl["engine"] == "http":
        lo, cpus, gpus = 1, 0, 0  # the HTTP workers take a fraction of a CPU each
    elif wl["engine"] in ("vllm", "sglang"):
        gpus = llm_engines.gpus_per_engine(wl)
    else:
        gpus = 0 if wl["num_gpus"] in (None, "auto") else wl["num_gpus"]
    # At least one replica plus a read/write task must fit.
    return common.make_spec(recipe, run_id, "batch_infer", wl, needs_cpus=lo * cpus + TASK_CPUS,
                            needs_gpus=lo * gpus, metadata={"output": wl["output"], "input": wl["input"]})


# ---------------------------------------------------------------- on the cluster

READ_CPUS = 0.25  # Ray Data read/write tasks: small, so model replicas never starve them


def _read(wl: dict):
    import ray

    fmt, path = wl["input_format"], wl["input"]
    if fmt == "auto":
        raise common.WorkloadError(f"cannot tell the format of '{path}'; set workload.input_format")
    kw = {"num_cpus": READ_CPUS}
    try:
        if fmt == "jsonl":
            return ray.data.read_json(path, lines=True, **kw)
        if fmt == "parquet":
            return ray.data.read_parquet(path, **kw)
        return ray.data.read_csv(path, **kw)
    except FileNotFoundError as e:
        raise common.WorkloadError(f"input not found: {path} ({e})") from None


def _check_input(wl: dict) -> None:
    path = wl["input"]
    if common.is_uri(path):
        return
    if not os.path.exists(path):
        raise common.WorkloadError(f"input {path} does not exist on the cluster node running the job "
                                   "(for a remote cluster, put the data on s3:// or in the image)")


def _publisher(wl: dict, p: dict):
    """The output folder's Publisher: checks it, stages the run's files, publishes them on success."""
    return output.Publisher(wl["output"], recipe=p.get("recipe") or "", kind=KIND, run_id=p.get("run_id") or "run",
                            overwrite=bool(wl["overwrite"]),
                            rename=output.jsonl_name if wl["output_format"] == "jsonl" else None)


def _write(ds, wl: dict, folder: str) -> None:
    """Write the results into `folder` (this run's own, empty staging folder)."""
    fmt = wl["output_format"]
    kw = {"ray_remote_args": {"num_cpus": READ_CPUS}, "mode": "append"}  # never Ray's "overwrite": it empties folders
    if fmt == "jsonl":
        ds.write_json(folder, **kw)
    elif fmt == "parquet":
        ds.write_parquet(folder, **kw)
    else:
        ds.write_csv(folder, **kw)


def _count_output(wl: dict, out: str) -> dict:
    """rows / input_tokens / output_tokens of what was written into folder `out`."""
    import ray

    fmt = wl["output_format"]
    cols = ["input_tokens", "output_tokens"]
    if fmt == "jsonl":
        ds = ray.data.read_json(out, lines=True, num_cpus=READ_CPUS)
    elif fmt == "parquet":
        ds = ray.data.read_parquet(out, columns=cols, num_cpus=READ_CPUS)
    else:
        ds = ray.data.read_csv(out, num_cpus=READ_CPUS)
    ds = ds.select_columns(cols)
    rows = 0
    sums = {c: 0 for c in cols}
    for batch in ds.iter_batches(batch_size=4096, batch_format="numpy"):
        rows += len(batch["input_tokens"])
        for c in cols:
            sums[c] += int(batch[c].sum())
    return {"rows": rows, **sums}


def _local_total(wl: dict) -> int | None:
    """Row count for progress, when it is cheap: a local JSONL file (lines) or Parquet (metadata)."""
    path = wl["input"]
    if common.is_uri(path) or not os.path.isfile(path):
        return None
    try:
        if wl["input_format"] == "jsonl" and not path.endswith((".gz", ".zst", ".br", ".lz4")):
            with open(path, "rb") as f:
                return sum(1 for line in f if line.strip())
        if wl["input_format"] == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
    except OSError:
        return None
    return None


def main(p: dict) -> None:
    wl = p["workload"]
    ray = common.connect()
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # log-friendly: rayctl prints its own progress lines
    t_start = time.perf_counter()
    _check_input(wl)
    pub = _publisher(wl, p)
    try:
        pub.begin()  # refuses a folder holding files rayctl did not write
    except output.Refused as e:
        raise common.WorkloadError(str(e)) from None
    old_term = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _exit_on_term)  # `rayctl stop`: still clean up the staging folder
        counts, engine, stats = _run(ray, wl, pub, (p.get("resources") or {}).get("accelerators"))
        try:
            pub.commit()
        except output.Refused as e:
            raise common.WorkloadError(f"{e}; the results were not published") from None
    except BaseException:
        pub.abort()  # only this run's staging folder goes; the previous results stay
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)
    elapsed = time.perf_counter() - t_start
    protocol.progress(counts["rows"], counts["rows"], "rows", f"wrote {wl['output']}",
                      output_tokens=counts["output_tokens"])
    out = {
        **counts,
        "output": wl["output"],
        "files": len(pub.files),
        "engine": engine,
        "model": wl["model"],
        "elapsed_s": round(elapsed, 3),
        "rows_per_s": round(counts["rows"] / elapsed, 3) if elapsed else None,
        "output_tokens_per_s": round(counts["output_tokens"] / elapsed, 3) if elapsed else None,
    }
    if engine == "http":
        out.update(llm_engines.http_metrics(wl))
    if stats:
        out["generate_s"] = round(stats["gen_s"], 3)
        out["model_load_s"] = round(max(stats["load_s"]), 3) if stats["load_s"] else None
        out["nodes_used"] = common.nodes_used(stats.get("nodes") or [])
    print(f"rayctl: {counts['rows']} rows, {counts['input_tokens']} input / {counts['output_tokens']} output tokens "
          f"in {elapsed:.1f} s -> {wl['output']}", flush=True)  # the throughput: once, in the launch summary
    protocol.metrics(**out)


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


def _run(ray, wl: dict, pub, accelerators: list | None = None) -> tuple[dict, str, dict]:
    """Read, generate, write into the staging folder; (counts of what was written, engine, generator stats)."""
    staging = pub.staging
    total_cpu, total_gpu = common.cluster_totals()
    engine = pick_engine(wl, total_gpu)
    ds = _read(wl)
    if wl.get("limit"):
        ds = ds.limit(int(wl["limit"]))
    total = _local_total(wl)
    if total is not None and wl.get("limit"):
        total = min(total, int(wl["limit"]))
    if wl["concurrency"] in (None, "auto"):
        # transformers: one replica per GPU, or per node on CPUs; the ray.data.llm engines size
        # themselves from the cluster's GPUs (llm_engines.concurrency) when given none.
        wl["concurrency"] = (auto_concurrency(wl, total_gpu, len(common.alive_nodes())) if engine == "transformers"
                             else None)
    # Blocks of one batch each, so every replica gets work and progress moves per batch.
    ds = _small_tasks(ds.repartition(target_num_rows_per_block=int(wl["batch_size"])))
    counter = counter_class().remote()
    if engine == "transformers":
        ds = build_transformers(ds, wl, total_cpu, total_gpu, counter)
    else:
        ds = llm_engines.build(ds, wl, engine, ds.columns(), counter, accelerators)

    errors: list = []

    def write():
        try:
            _write(ds, wl, staging)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    protocol.progress(0, total, "rows", f"reading {wl['input']}")
    worker = threading.Thread(target=write, name="rayctl-batch-write", daemon=True)
    worker.start()
    watch(worker, counter, total, float(wl["stall_timeout_s"]))
    if errors:
        inner, why = root_cause(errors[0])
        if inner is not None:
            raise inner
        raise common.WorkloadError(f"batch inference failed: {why}") from errors[0]
    if pub.staged_files():
        counts = _count_output(wl, staging)
    else:  # nothing to write (an empty input): Ray Data wrote no file
        counts = {"rows": 0, "input_tokens": 0, "output_tokens": 0}
    if total is not None and counts["rows"] != total:  # every input row exactly once, or nothing published
        raise common.WorkloadError(f"wrote {counts['rows']} rows for {total} input rows; the results were not "
                                   "published")
    stats = ray.get(counter.get.remote())
    return counts, engine, stats


def _small_tasks(ds):
    """The streaming repartition's tasks take READ_CPUS instead of Ray Data's default whole
    CPU, which a 1-CPU node that runs a replica never has free (the pipeline would stall).
    repartition() takes no remote args, so they are set on its (last) logical operator."""
    args = getattr(getattr(getattr(ds, "_logical_plan", None), "dag", None), "ray_remote_args", None)
    if isinstance(args, dict) and args.get("num_cpus") is None:
        args["num_cpus"] = READ_CPUS
    return ds


if __name__ == "__main__":
    common.run_main(main)
