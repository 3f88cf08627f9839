"""The model side of the built-in `batch-infer` workload: the replicas Ray Data runs.

* engine `transformers`: `Generator`, a Ray Data callable class holding the model
  (`from_pretrained`) in each of `concurrency` actors, completing `batch_size` prompts per
  call with `generate()`, and a `Counter` actor summing rows/tokens for progress;
* `pick_engine`: what `auto` means on this cluster, and whether the chosen engine can run here.

Engines vllm, sglang and http (Ray Data's LLM processors) are in `llm_engines.py`.
"""

from __future__ import annotations

import os
import time

from . import common, demo_model

TASK_CPUS = 1.0  # what Ray Data's other tasks (repartition) take; kept free of replicas


def replicas(conc) -> tuple[int, int]:
    """(min, max) replicas of a concurrency setting; `auto` (resolved on the cluster) counts as 1 here."""
    if conc in (None, "auto"):
        return 1, 1
    return (int(conc[0]), int(conc[1])) if isinstance(conc, list) else (int(conc), int(conc))


def auto_concurrency(wl: dict, total_gpu: float, nodes: int) -> int:
    """`concurrency: auto` for the transformers engine on this cluster: one replica per GPU
    across all nodes, or one per node on CPU-only clusters (vllm/sglang: `llm_engines.concurrency`)."""
    setting = wl.get("num_gpus")
    per_gpu = 1.0 if setting in (None, "auto") else float(setting)
    if per_gpu > 0 and total_gpu >= per_gpu:
        return max(1, int(total_gpu // per_gpu))
    return max(1, int(nodes))


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
        self.node = common.node_id()
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
        out_tok = generated_lengths(gen, self.tokenizer.eos_token_id)
        texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
        batch = dict(batch)
        batch["generated_text"] = np.array(texts, dtype=object)
        batch["input_tokens"] = in_tok
        batch["output_tokens"] = out_tok
        if self.counter is not None:
            self.counter.add.remote(len(prompts), int(in_tok.sum()), int(out_tok.sum()),
                                    gen_s=time.perf_counter() - t0, node=self.node)
        return batch


def generated_lengths(gen, eos_id):
    """Tokens generated per row: up to and including the first EOS (generate pads after it)."""
    import numpy as np

    g = gen.numpy()
    n = g.shape[1]
    if eos_id is None or n == 0:
        return np.full(g.shape[0], n, dtype="int64")
    stop = g == eos_id
    return np.where(stop.any(axis=1), stop.argmax(axis=1) + 1, n).astype("int64")


def counter_class():
    import ray

    @ray.remote(num_cpus=0)
    class Counter:
        def __init__(self):
            self.rows = self.input_tokens = self.output_tokens = 0
            self.gen_s = 0.0
            self.load_s: list = []
            self.nodes: set = set()

        def add(self, rows, input_tokens, output_tokens, gen_s=0.0, load_s=None, node=None):
            if node:
                self.nodes.add(node)
            self.rows += rows
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            self.gen_s += gen_s
            if load_s is not None:
                self.load_s.append(load_s)

        def get(self):
            return {"rows": self.rows, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                    "gen_s": self.gen_s, "load_s": list(self.load_s), "nodes": sorted(self.nodes)}

    # On the driver's node: a lost worker node must not take the run's counts with it.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return Counter.options(scheduling_strategy=NodeAffinitySchedulingStrategy(common.node_id(), soft=False))


def pick_engine(wl: dict, total_gpu: float) -> str:
    import importlib.util

    engine = wl["engine"]
    if engine == "http":
        return engine
    if engine == "sglang":
        if importlib.util.find_spec("sglang") is None:
            raise common.WorkloadError(
                "engine sglang needs the sglang package on the cluster, and it is not installed there; add "
                "`pip: [\"sglang[all]\"]` to the workload (or use an image with SGLang), or set engine: vllm")
        if total_gpu <= 0:
            raise common.WorkloadError("engine sglang runs on GPUs and this cluster has none; use engine: "
                                       "transformers (or auto) here, or launch on a GPU cluster")
        return engine
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


def build_transformers(ds, wl: dict, total_cpu: float, total_gpu: float, counter):
    from ray.data import ActorPoolStrategy

    lo, hi = replicas(wl["concurrency"])
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
