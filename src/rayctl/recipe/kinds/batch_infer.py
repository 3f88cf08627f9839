"""Fields of the built-in `batch-infer` workload (see docs/workloads.md)."""

from __future__ import annotations

import os
import re

from .base import (DEMO_MODEL, auto_or_number, boolean, choice, describe, integer, is_uri, mapping, number,
                   shared_storage, string)

KIND = "batch-infer"
FORMATS = ("jsonl", "parquet", "csv")
EXT = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
       ".csv": "csv"}
ENGINES = ("auto", "transformers", "vllm", "sglang", "http")
HTTP_KEYS = ("endpoint", "api_key_env", "provider", "qps", "max_retries", "retry_wait_s")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_CONCURRENCY = ("concurrency is auto, a whole number >= 1 (model replicas) or [min, max] for an autoscaling "
                "pool, got {got}")

FIELDS: dict[str, dict] = {
    "input": string(None, "prompts: a JSONL, Parquet or CSV file or folder; local path (relative to the "
                          "recipe) or s3://..."),
    "output": string(None, "folder the results are written to; local path (relative to the recipe) or s3://..."),
    "input_format": choice(("auto",) + FORMATS, "auto", "auto (from the file extension), jsonl, parquet or csv"),
    "output_format": choice(FORMATS, "jsonl", "jsonl, parquet or csv"),
    "overwrite": boolean(True, "replace the files an earlier run of this recipe wrote there (listed in the "
                               "folder's .rayctl-manifest.json); false: refuse a non-empty folder. A folder "
                               "holding any other file is always refused"),
    "prompt_column": string("prompt", "input column holding the prompt text"),
    "model": string(DEMO_MODEL, "rayctl-demo (built locally), a local checkpoint folder, or a Hugging Face id"),
    "engine": choice(ENGINES, "auto", "auto, transformers, vllm, sglang or http"),
    "batch_size": integer(32, "prompts per model call", minimum=1, maximum=100000),
    "concurrency": {"anyOf": [{"enum": ["auto"]}, {"type": "integer", "minimum": 1},
                              {"type": "array", "items": {"type": "integer", "x-error": _CONCURRENCY},
                               "minItems": 2, "maxItems": 2}],
                    "default": "auto", "description": "model replicas (actors), or [min, max] to autoscale; auto: "
                                                      "one per GPU across all nodes, or one per node on CPU clusters",
                    "x-error": _CONCURRENCY},
    "max_new_tokens": integer(32, "tokens generated per prompt at most", minimum=1, maximum=32768),
    "temperature": number(0.0, "sampling temperature; 0 is greedy", minimum=0),
    "top_p": number(1.0, "nucleus sampling mass", above=0, maximum=1),
    "num_cpus": number(None, "CPUs reserved per transformers replica (default: min(1, (cluster CPUs - 1) / "
                             "replicas): one CPU stays free for Ray Data's read/repartition/write tasks)", above=0),
    "num_gpus": auto_or_number("auto", "GPUs per transformers replica: auto (1 when the cluster has a GPU per "
                                       "replica, else 0) or a number; vLLM sizes its own GPUs from engine_kwargs"),
    "threads": integer(None, "torch threads per transformers replica (default: cluster CPUs / replicas)", minimum=1),
    "limit": integer(None, "process only the first N rows", minimum=1),
    "engine_kwargs": mapping(None, "extra engine arguments passed to vLLM or SGLang (engines vllm, sglang), e.g. "
                                   "{tensor_parallel_size: 2, max_model_len: 4096}"),
    "endpoint": string(None, "engine http: an OpenAI-compatible base URL (e.g. https://api.openai.com/v1; rayctl "
                             "posts to ENDPOINT/chat/completions), or run:RUN_ID for a rayctl serve run"),
    "api_key_env": {"type": "string", "pattern": _ENV_NAME,
                    "description": "engine http: name of the environment variable holding the API key, read by "
                                   "`rayctl launch` on this machine and handed to the job as a secret",
                    "x-error": "expected an environment variable name such as OPENAI_API_KEY, got {got}"},
    "provider": string(None, "engine http: the genai-prices provider id used to price the run (default: from the "
                             "endpoint's host), e.g. openai, groq"),
    "qps": integer(None, "engine http: requests per second per worker at most (default: no limit)", minimum=1),
    "max_retries": integer(3, "engine http: retries of a request answered 429/408/500/502/503/504 or not at all "
                              "(exponential backoff); then the run fails", minimum=0, maximum=20),
    "retry_wait_s": number(1.0, "engine http: first retry wait in seconds (doubles each retry)", above=0),
    "stall_timeout_s": number(600, "fail when no row completes for this many seconds", above=0),
}
REQUIRED = ("input", "output")


def _check_concurrency(value) -> list:
    if isinstance(value, list) and not 1 <= value[0] <= value[1]:
        return [((), _CONCURRENCY.format(got=describe(value)), False)]
    return []


FIELD_CHECKS = {"concurrency": _check_concurrency}


def extra(raw: dict, wl: dict) -> list:
    out = []
    fmt = wl["input_format"]
    if fmt == "auto" and not is_uri(wl["input"]) and format_of(wl["input"]) is None:
        # A folder (or an extension-less file): the format must be said.
        if not looks_like_dir(wl["input"]):
            out.append((("input",), f"cannot tell the format of '{wl['input']}' from its extension; "
                                    f"name it .jsonl, .parquet or .csv or set input_format", False))
    engine = wl["engine"]
    if wl.get("engine_kwargs") and engine in ("transformers", "http"):
        out.append((("engine_kwargs",), f"engine_kwargs are vLLM engine arguments (or SGLang's); engine is {engine}",
                    False))
    if engine == "http":
        out.extend(_check_http(raw, wl))
    else:
        for k in HTTP_KEYS:
            if k in (raw or {}):
                out.append(((k,), f"'{k}' is a key of engine http; engine is {engine}", True))
    return out


def _check_http(raw: dict, wl: dict) -> list:
    ep = wl.get("endpoint")
    if not ep:
        return [((), "engine http needs 'endpoint': an OpenAI-compatible base URL such as https://api.openai.com/v1, "
                     "or run:RUN_ID of a rayctl serve run", False)]
    ep = str(ep).strip()
    if ep.startswith("run:"):
        if not ep[4:].strip():
            return [(("endpoint",), "run: needs a run id, e.g. run:demo-serve-20261202-101500-ab12", False)]
        return []
    if not re.match(r"^https?://[^/\s]+", ep):
        return [(("endpoint",), f"'{ep}' is not an http(s) URL; write the API's base URL, e.g. "
                                "https://api.openai.com/v1, or run:RUN_ID", False)]
    if ep.rstrip("/").endswith(("/chat/completions", "/completions")):
        return [(("endpoint",), f"'{ep}' is a route; write the base URL (e.g. https://api.openai.com/v1): rayctl "
                                "appends /chat/completions", False)]
    if "model" not in (raw or {}):
        return [((), "engine http with a URL endpoint needs 'model': the model name that API expects "
                     "(e.g. gpt-4o-mini)", False)]
    return []


def looks_like_dir(p: str) -> bool:
    return p.endswith("/") or os.path.splitext(p)[1] == ""


def format_of(path: str) -> str | None:
    p = path.lower().rstrip("/")
    for suffix in (".gz", ".zst", ".br", ".lz4"):
        if p.endswith(suffix):
            p = p[: -len(suffix)]
    return EXT.get(os.path.splitext(p)[1])


def target_checks(wl: dict, nodes: int, target: str) -> list:
    """Rules that depend on where the recipe runs: on several nodes of a remote cluster the
    replicas write from every node, so the output must be storage every node reaches."""
    return shared_storage(wl, "output", nodes, target, "",
                          why="each node would write its share of the results to its own disk")
