"""Built-in `batch-infer` workload: Ray Data reads prompts, a model completes them, Ray
Data writes the results.

* input: JSONL, Parquet or CSV (a file or a folder; local path or s3://...). Paths
  relative to the recipe file are resolved when the job is built.
* engine `transformers` (CPU, or one GPU per replica when the cluster has them): a
  callable class holds the model
  (`from_pretrained`) in each of `concurrency` actors and completes `batch_size` prompts
  per call with `generate()`. Engine `vllm` hands the same rows to Ray Data's LLM
  processor (`ray.data.llm`, vLLM engine) on GPU clusters. `auto` picks vllm when the
  cluster has GPUs and vllm is installed, else transformers.
* output: a folder of JSONL/Parquet/CSV files holding every input column plus
  `generated_text`, `input_tokens` and `output_tokens`.

Progress (rows) is reported while it runs; the final metrics (rows, input_tokens,
output_tokens, output) are counted from the files written, so a retried batch is never
counted twice. A pipeline that makes no progress for `stall_timeout_s` fails with a
message instead of hanging.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from .. import protocol
from . import common, demo_model, output
from ..recipe.kinds.batch_infer import EXT as _EXT, FIELDS, FORMATS, KIND  # noqa: F401  (the one definition)
from ..recipe.kinds.batch_infer import format_of as _format_of, looks_like_dir as _looks_like_dir  # noqa: F401


def settings(recipe) -> dict:
    wl = common.with_defaults(recipe.workload, FIELDS)
    base = common.recipe_dir(recipe)
    wl["input"] = common.resolve_path(wl["input"], base)
    wl["output"] = common.resolve_path(wl["output"], base)
    wl["model"] = demo_model.resolve(wl["model"], base)
    if wl["input_format"] == "auto":
        wl["input_format"] = _format_of(wl["input"]) or "auto"
    return wl


def _replicas(conc) -> tuple[int, int]:
    return (int(conc[0]), int(conc[1])) if isinstance(conc, list) else (int(conc), int(conc))


def job_spec(recipe, run_id: str):
    wl = settings(recipe)
    lo, _ = _replicas(wl["concurrency"])
    cpus = wl["num_cpus"] if wl["num_cpus"] is not None else 0.5
    gpus = 1 if wl["engine"] == "vllm" else (0 if wl["num_gpus"] in (None, "auto") else wl["num_gpus"])
    # At least one replica plus a read/write task must fit.
    return common.make_spec(recipe, run_id, "batch_infer", wl, needs_cpus=lo * cpus + TASK_CPUS,
                            needs_gpus=lo * gpus, metadata={"output": wl["output"], "input": wl["input"]})


# ---------------------------------------------------------------- on the cluster

READ_CPUS = 0.25  # Ray Data read/write tasks: small, so model replicas never starve them
TASK_CPUS = 1.0  # what Ray Data's other tasks (repartition) take; kept free of replicas


class Generator:
    """Ray Data callable class: one model replica; completes a batch of prompts."""

    def __init__(self, model: str, prompt_column: str, max_new_tokens: int, temperature: float, top_p: float,
                 threads: int, device: str, counter=None):
        import torch

        t0 = time.perf_counter()
        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.model, self.tokenizer = demo_model.load(model, device=device)
        self.tokenizer.truncation_side = "left"
        limit = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_prompt = max(1, int(limit) - max_new_tokens)
        self.col = prompt_column
        self.device = device
        self.gen_kw = dict(max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                           pad_token_id=self.tokenizer.pad_token_id)
        if temperature > 0:
            self.gen_kw.update(temperature=temperature, top_p=top_p)
        self.counter = counter
        self.load_s = time.perf_counter() - t0
        if counter is not None:
            counter.add.remote(0, 0, 0, load_s=self.load_s)

    def __call__(self, batch: dict) -> dict:
        import numpy as np
        import torch

        t0 = time.perf_counter()
        if self.col not in batch:
            raise common.WorkloadError(f"input has no column '{self.col}' (columns: {', '.join(batch)}); "
                                       "set workload.prompt_column")
        prompts = ["" if p is None else str(p) for p in batch[self.col]]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_prompt).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, **self.gen_kw)
        gen = out[:, enc["input_ids"].shape[1]:].cpu()
        in_tok = enc["attention_mask"].sum(dim=1).cpu().numpy().astype("int64")
        out_tok = _generated_lengths(gen, self.tokenizer.eos_token_id)
        texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
        batch = dict(batch)
        batch["generated_text"] = np.array(texts, dtype=object)
        batch["input_tokens"] = in_tok
        batch["output_tokens"] = out_tok
        if self.counter is not None:
            self.counter.add.remote(len(prompts), int(in_tok.sum()), int(out_tok.sum()),
                                    gen_s=time.perf_counter() - t0)
        return batch


def _generated_lengths(gen, eos_id):
    """Tokens generated per row: up to and including the first EOS (generate pads after it)."""
    import numpy as np

    g = gen.numpy()
    n = g.shape[1]
    if eos_id is None or n == 0:
        return np.full(g.shape[0], n, dtype="int64")
    stop = g == eos_id
    return np.where(stop.any(axis=1), stop.argmax(axis=1) + 1, n).astype("int64")


def _counter_class():
    import ray

    @ray.remote(num_cpus=0)
    class Counter:
        def __init__(self):
            self.rows = self.input_tokens = self.output_tokens = 0
            self.gen_s = 0.0
            self.load_s: list = []

        def add(self, rows, input_tokens, output_tokens, gen_s=0.0, load_s=None):
            self.rows += rows
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            self.gen_s += gen_s
            if load_s is not None:
                self.load_s.append(load_s)

        def get(self):
            return {"rows": self.rows, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                    "gen_s": self.gen_s, "load_s": list(self.load_s)}

    return Counter


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


def _pick_engine(wl: dict, total_gpu: float) -> str:
    import importlib.util

    engine = wl["engine"]
    has_vllm = importlib.util.find_spec("vllm") is not None
    if engine == "auto":
        engine = "vllm" if (total_gpu > 0 and has_vllm) else "transformers"
        print(f"rayctl: engine auto -> {engine} (cluster GPUs: {total_gpu:g}, vllm "
              f"{'installed' if has_vllm else 'not installed'})", flush=True)
    if engine == "vllm" and not has_vllm:
        raise common.WorkloadError(
            "engine vllm needs the vllm package on the cluster, and it is not installed there; add "
            "`pip: [vllm]` to the workload (or use an image with vLLM), or set engine: transformers")
    if engine == "vllm" and total_gpu <= 0:
        raise common.WorkloadError("engine vllm runs on GPUs and this cluster has none; use engine: transformers "
                                   "(or auto) here, or launch on a GPU cluster")
    return engine


def _build_transformers(ds, wl: dict, total_cpu: float, total_gpu: float, counter):
    from ray.data import ActorPoolStrategy

    lo, hi = _replicas(wl["concurrency"])
    gpus = common.gpus_per_replica(wl["num_gpus"], hi, total_gpu)
    cpus = wl["num_cpus"]
    if cpus is None:
        # Leave one CPU for Ray Data's own tasks (the streaming repartition takes a whole
        # CPU): on 2 CPUs, 1 replica takes 1 CPU, 2 replicas 0.5 each.
        cpus = min(1.0, max(0.1, (total_cpu - TASK_CPUS) / hi))
    common.wait_for_resources(lo * cpus + TASK_CPUS, lo * gpus, float(wl["resource_timeout_s"]),
                              f"batch inference with {lo} replica(s) of {cpus:g} CPU plus {TASK_CPUS:g} CPU for "
                              "Ray Data's read/repartition/write tasks")
    threads = wl["threads"] or max(1, min(os.cpu_count() or 1, int(total_cpu // hi)))
    device = "cuda" if gpus > 0 else "cpu"
    print(f"rayctl: engine transformers: {lo if lo == hi else f'{lo}-{hi}'} replica(s) x {cpus:g} CPU"
          + (f" x {gpus:g} GPU" if gpus else f", {threads} torch thread(s) each") + f", batch_size {wl['batch_size']}",
          flush=True)
    return ds.map_batches(
        Generator,
        fn_constructor_kwargs=dict(model=wl["model"], prompt_column=wl["prompt_column"],
                                   max_new_tokens=int(wl["max_new_tokens"]), temperature=float(wl["temperature"]),
                                   top_p=float(wl["top_p"]), threads=threads, device=device, counter=counter),
        batch_size=int(wl["batch_size"]), batch_format="numpy",
        compute=ActorPoolStrategy(min_size=lo, max_size=hi), num_cpus=cpus, num_gpus=gpus or None)


def vllm_config(wl: dict):
    """The Ray Data LLM processor config for engine vllm (no Ray cluster needed to build it)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    lo, hi = _replicas(wl["concurrency"])
    return vLLMEngineProcessorConfig(
        model_source=demo_model.local_path(wl["model"]), engine_kwargs=dict(wl.get("engine_kwargs") or {}),
        concurrency=(lo, hi) if lo != hi else lo, batch_size=int(wl["batch_size"]),
        chat_template_stage=False, tokenize_stage=True, detokenize_stage=True)


def vllm_row_fns(wl: dict, columns: list):
    """(preprocess, postprocess) for the LLM processor: prompt + sampling params in; the
    input columns + generated_text + token counts out."""
    col = wl["prompt_column"]
    keep = list(columns)
    sampling = {"temperature": float(wl["temperature"]), "top_p": float(wl["top_p"]),
                "max_tokens": int(wl["max_new_tokens"])}

    def pre(row):
        if col not in row:
            raise common.WorkloadError(f"input has no column '{col}' (columns: {', '.join(row)}); "
                                       "set workload.prompt_column")
        return {**{k: row[k] for k in keep}, "prompt": "" if row[col] is None else str(row[col]),
                "sampling_params": dict(sampling)}

    def post(row):
        return {**{k: row[k] for k in keep}, "generated_text": row.get("generated_text") or "",
                "input_tokens": int(row.get("num_input_tokens") or 0),
                "output_tokens": int(row.get("num_generated_tokens") or 0)}

    return pre, post


def _build_vllm(ds, wl: dict, columns: list):
    from ray.data.llm import build_processor

    config = vllm_config(wl)
    pre, post = vllm_row_fns(wl, columns)
    print(f"rayctl: engine vllm: model {config.model_source}, concurrency {config.concurrency}, "
          f"batch_size {wl['batch_size']}", flush=True)
    return build_processor(config, preprocess=pre, postprocess=post)(ds)


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
        counts, engine, stats = _run(ray, wl, pub)
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
    protocol.progress(counts["rows"], counts["rows"], "rows", f"wrote {wl['output']}")
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
    if stats:
        out["generate_s"] = round(stats["gen_s"], 3)
        out["model_load_s"] = round(max(stats["load_s"]), 3) if stats["load_s"] else None
    print(f"rayctl: {counts['rows']} rows, {counts['input_tokens']} input / {counts['output_tokens']} output tokens "
          f"in {elapsed:.1f} s ({out['output_tokens_per_s']} output tok/s) -> {wl['output']}", flush=True)
    protocol.metrics(**out)


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


def _run(ray, wl: dict, pub) -> tuple[dict, str, dict]:
    """Read, generate, write into the staging folder; (counts of what was written, engine, generator stats)."""
    staging = pub.staging
    total_cpu, total_gpu = common.cluster_totals()
    engine = _pick_engine(wl, total_gpu)
    ds = _read(wl)
    if wl.get("limit"):
        ds = ds.limit(int(wl["limit"]))
    total = _local_total(wl)
    if total is not None and wl.get("limit"):
        total = min(total, int(wl["limit"]))
    # Blocks of one batch each, so every replica gets work and progress moves per batch.
    ds = ds.repartition(target_num_rows_per_block=int(wl["batch_size"]))
    counter = _counter_class().remote() if engine == "transformers" else None
    if engine == "transformers":
        ds = _build_transformers(ds, wl, total_cpu, total_gpu, counter)
    else:
        ds = _build_vllm(ds, wl, ds.columns())

    errors: list = []

    def write():
        try:
            _write(ds, wl, staging)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    protocol.progress(0, total, "rows", f"reading {wl['input']}")
    worker = threading.Thread(target=write, name="rayctl-batch-write", daemon=True)
    worker.start()
    _watch(worker, counter, total, float(wl["stall_timeout_s"]))
    if errors:
        inner, why = _root_cause(errors[0])
        if inner is not None:
            raise inner
        raise common.WorkloadError(f"batch inference failed: {why}") from errors[0]
    if pub.staged_files():
        counts = _count_output(wl, staging)
    else:  # nothing to write (an empty input): Ray Data wrote no file
        counts = {"rows": 0, "input_tokens": 0, "output_tokens": 0}
    stats = ray.get(counter.get.remote()) if counter is not None else {}
    return counts, engine, stats


def _root_cause(e: BaseException) -> tuple[BaseException | None, str]:
    """(the WorkloadError inside a Ray task error, if any; a one-line description of the cause)."""
    import re

    seen, cur = set(), e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, common.WorkloadError):
            return cur, str(cur)
        cur = getattr(cur, "cause", None) or cur.__cause__ or cur.__context__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = re.search(r"WorkloadError: (.+)", text)
    if m:
        return common.WorkloadError(m.group(1).strip()), m.group(1).strip()
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return None, (lines[-1] if lines else type(e).__name__)[:500]


def _watch(worker: threading.Thread, counter, total, stall_timeout_s: float) -> None:
    """Report progress while the pipeline runs; fail if no row completes for stall_timeout_s."""
    import ray

    last_rows, last_change = -1, time.monotonic()
    while worker.is_alive():
        worker.join(timeout=2.0)
        if counter is None:
            continue
        try:
            rows = ray.get(counter.get.remote(), timeout=10)["rows"]
        except Exception:
            rows = last_rows  # the counter did not answer: no progress seen, the stall clock runs on
        if rows != last_rows:
            if rows > 0:
                protocol.progress(rows, total, "rows", "generating")
            last_rows, last_change = rows, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout_s:
            free = ray.available_resources()
            raise common.WorkloadError(
                f"stalled: no progress for {stall_timeout_s:.0f} s (no row completed; free now: "
                f"{free.get('CPU', 0):g} CPU, "
                f"{free.get('GPU', 0):g} GPU); other work may hold the CPUs Ray Data's read tasks or model replicas "
                "need; lower concurrency/num_cpus or raise workload.stall_timeout_s")


if __name__ == "__main__":
    common.run_main(main)
