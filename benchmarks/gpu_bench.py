"""GPU batch inference: rayctl's batch-infer runner (`engine: vllm`, Ray Data's LLM
processor on a local Ray cluster) vs vLLM's own offline `LLM.generate`, on the same prompts
and the same model, in one run.

The model is built from a config with random weights (vLLM's `load_format="dummy"`): a
GPT-2 config (`--layers`, `--hidden`, `--heads`) with the demo model's byte-level
tokenizer, written to a temp folder; nothing is downloaded. `--model PATH` uses a real
checkpoint folder instead (still with dummy weights unless `--real-weights`).

Both sides get the same prompts, the same sampling (greedy, `--max-tokens`), the same
engine arguments and one replica per GPU (`--gpus`, default: all), and count generated
tokens the same way (vLLM's token ids). Printed:

* vLLM alone: one `LLM` instance in its own process on one GPU (what one runner replica
  holds): model load, generate, output tokens, output tokens/s per GPU;
* the runner (`rayctl launch` of a batch-infer recipe on a fresh local cluster under a temp
  RAYCTL_HOME, stopped afterwards with `rayctl down`): its pipeline time (job start to files
  written, model load included) and job wall, output tokens/s per GPU;
* the ratio of the two per-GPU figures, each including its model load. Target: runner
  >= 0.9x vLLM alone.

That target is UNMEASURED in rayctl's own workspace: it has no GPU (and the GPU machine that
is sometimes lent has neither Ray nor vLLM). Without a GPU, or without vLLM or Ray, this
script says so and exits 0.

Usage: python benchmarks/gpu_bench.py [--prompts 2000] [--max-tokens 128] [--gpus N]
       [--layers 24 --hidden 1024 --heads 16] [--model PATH [--real-weights]]
       [--engine-kwargs '{"max_model_len": 1024}']
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
TARGET = 0.9

VLLM_ALONE = r'''
import json, sys, time
t0 = time.perf_counter()
from vllm import LLM, SamplingParams
args = json.loads(sys.argv[1])
prompts = [json.loads(l)["prompt"] for l in open(args["data"]) if l.strip()]
t1 = time.perf_counter()
llm = LLM(model=args["model"], **args["engine_kwargs"])
t2 = time.perf_counter()
outs = llm.generate(prompts, SamplingParams(temperature=0.0, top_p=1.0, max_tokens=args["max_tokens"]))
t3 = time.perf_counter()
print(json.dumps({"rows": len(outs), "input_tokens": sum(len(o.prompt_token_ids) for o in outs),
                  "output_tokens": sum(len(o.outputs[0].token_ids) for o in outs),
                  "import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2}))
'''


def gpus_here() -> int:
    """GPUs `nvidia-smi -L` lists: the reader the local target uses (rayctl.providers.local)."""
    from rayctl.providers.local import nvidia_smi_gpus

    return len(nvidia_smi_gpus())


def why_not() -> str | None:
    """Why this machine cannot run the benchmark, or None."""
    n = gpus_here()
    missing = [m for m in ("vllm", "ray") if importlib.util.find_spec(m) is None]
    if n == 0:
        return "no GPU here (nvidia-smi lists none)" + (f"; {' and '.join(missing)} not installed" if missing else "")
    if missing:
        return (f"{n} GPU(s) here, but {' and '.join(missing)} not installed (pip install 'rayctl[local,gpu]': "
                "ray[llm]==2.60.0 with vllm==0.29.0)")
    return None


def make_model(dest: Path, layers: int, hidden: int, heads: int, positions: int) -> Path:
    """A GPT-2 config (no weights) + the demo byte-level tokenizer: vLLM's dummy load fills the weights."""
    from transformers import GPT2Config

    from rayctl.workloads import demo_model

    tok = demo_model.build_tokenizer()
    tok.model_max_length = positions
    tok.save_pretrained(dest)
    GPT2Config(vocab_size=len(tok), n_positions=positions, n_embd=hidden, n_layer=layers, n_head=heads,
               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
               architectures=["GPT2LMHeadModel"], torch_dtype="float16").save_pretrained(dest)
    return dest


def make_data(path: Path, rows: int) -> None:
    base = [json.loads(x) for x in (REPO / "examples/data/prompts.jsonl").read_text().splitlines() if x.strip()]
    with open(path, "w") as f:
        for i in range(rows):
            f.write(json.dumps({"id": i, "prompt": f"{base[i % len(base)]['prompt']} ({i})"}) + "\n")


def run_vllm_alone(model: str, data: Path, max_tokens: int, engine_kwargs: dict, env: dict) -> dict:
    args = {"model": model, "data": str(data), "max_tokens": max_tokens, "engine_kwargs": engine_kwargs}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", VLLM_ALONE, json.dumps(args)], capture_output=True, text=True,
                          env=dict(env, CUDA_VISIBLE_DEVICES=env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]),
                          timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"vLLM alone failed:\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t0
    return res


def run_runner(model: str, data: Path, out: Path, max_tokens: int, engine_kwargs: dict, gpus: int,
               batch_size: int, env: dict, work: Path) -> dict:
    recipe = work / "gpu-bench.yaml"
    wl = {"input": str(data), "output": str(out), "model": model, "engine": "vllm", "batch_size": batch_size,
          "concurrency": gpus, "max_new_tokens": max_tokens, "temperature": 0.0, "engine_kwargs": engine_kwargs}
    recipe.write_text("name: gpu-bench\nkind: batch-infer\ntarget: local\n"
                      f"resources: {{accelerators: '{_gpu_name()}:{gpus}'}}\n"
                      + "workload: " + json.dumps(wl) + "\n")
    cmd = [sys.executable, "-m", "rayctl", "launch", str(recipe), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"rayctl launch failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    from rayctl.ledger import Ledger

    with Ledger(Path(env["RAYCTL_HOME"]) / "ledger.db") as led:
        run = led.runs(limit=1)[0]
    m = dict(run["metrics"] or {})
    m.update(launch_wall_s=wall, run_id=run["id"], output_tokens=run["output_tokens"], rows=run["rows"])
    return m


def _gpu_name() -> str:
    """The first GPU's name as a recipe accelerator (H100, A100-80GB, L4, ...), for the plan's label."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "A100"
    from rayctl.recipe.accelerators import canonical

    for word in out.replace("NVIDIA", "").split():
        if canonical(word):
            return canonical(word)
    return "A100"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--gpus", type=int, default=None, help="runner replicas, one per GPU (default: all GPUs)")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--model", help="a checkpoint folder (default: a GPT-2 config built here, random weights)")
    ap.add_argument("--real-weights", action="store_true", help="with --model: load its weights (no dummy load)")
    ap.add_argument("--engine-kwargs", default="{}", help="JSON of extra vLLM engine arguments, both sides")
    args = ap.parse_args()

    reason = why_not()
    if reason:
        print(f"gpu_bench: {reason}. Nothing was measured; the target (rayctl's batch-infer runner >= {TARGET}x "
              "vLLM's own LLM.generate, output tokens/s per GPU) stays UNMEASURED here. Run this on a machine "
              "with a CUDA GPU and rayctl[local,gpu] installed.")
        return 0

    n_gpu = gpus_here()
    gpus = max(1, min(args.gpus or n_gpu, n_gpu))
    work = Path(tempfile.mkdtemp(prefix="rayctl-gpu-bench-"))
    home = work / "home"
    env = dict(os.environ, RAYCTL_HOME=str(home), PYTHONPATH=f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}",
               TOKENIZERS_PARALLELISM="false")
    os.environ["RAYCTL_HOME"] = str(home)
    engine_kwargs = json.loads(args.engine_kwargs)
    if not (args.model and args.real_weights):
        engine_kwargs.setdefault("load_format", "dummy")
    model = args.model or str(make_model(work / "model", args.layers, args.hidden, args.heads, args.positions))
    engine_kwargs.setdefault("max_model_len", min(args.positions, 4096))
    data = work / "prompts.jsonl"
    make_data(data, args.prompts)
    print(f"gpu_bench: {args.prompts} prompts, greedy, max {args.max_tokens} new tokens, model {model} "
          f"({'dummy' if engine_kwargs.get('load_format') == 'dummy' else 'real'} weights), engine_kwargs "
          f"{json.dumps(engine_kwargs, sort_keys=True)}; {n_gpu} GPU(s) here, runner on {gpus}")
    try:
        alone = run_vllm_alone(model, data, args.max_tokens, engine_kwargs, env)
        runner = run_runner(model, data, work / "out", args.max_tokens, engine_kwargs, gpus, args.batch_size, env,
                            work)
    finally:
        subprocess.run([sys.executable, "-m", "rayctl", "down"], env=env, capture_output=True, timeout=600)

    a_s = alone["load_s"] + alone["generate_s"]
    a_tps = alone["output_tokens"] / a_s
    print(f"vLLM alone (1 GPU): {alone['rows']} rows, {alone['output_tokens']} output tokens; load "
          f"{alone['load_s']:.1f} s + generate {alone['generate_s']:.1f} s -> {a_tps:,.0f} output tok/s per GPU "
          f"({alone['output_tokens'] / alone['generate_s']:,.0f} generate only)")
    r_s = float(runner.get("elapsed_s") or runner.get("duration_s") or runner["launch_wall_s"])
    r_tps = runner["output_tokens"] / r_s / gpus
    print(f"rayctl runner (run {runner['run_id']}, engine {runner.get('engine')}, {gpus} replica(s)): "
          f"{runner['rows']} rows, {runner['output_tokens']} output tokens; pipeline {r_s:.1f} s (model load "
          f"included), launch wall {runner['launch_wall_s']:.1f} s -> {r_tps:,.0f} output tok/s per GPU")
    ratio = r_tps / a_tps
    print(f"RESULT: runner = {ratio:.2f}x vLLM alone, output tokens/s per GPU, model load included on both sides "
          f"(target >= {TARGET}x: {'met' if ratio >= TARGET else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
