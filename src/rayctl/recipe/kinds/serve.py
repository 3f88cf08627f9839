"""Fields of the built-in `serve` workload (see docs/workloads.md)."""

from __future__ import annotations

from .base import DEMO_MODEL, auto_or_number, choice, integer, mapping, number, string

KIND = "serve"
DEFAULT_MAX_ONGOING = 8  # requests a transformers replica accepts at once
AUTOSCALING_KEYS = {
    "min_replicas": "fewest replicas (may be 0: scale to zero when idle)",
    "max_replicas": "most replicas",
    "initial_replicas": "replicas at start (default: min_replicas)",
    "target_ongoing_requests": "requests in flight per replica the autoscaler aims for",
    "upscale_delay_s": "seconds of high load before adding a replica",
    "downscale_delay_s": "seconds of low load before removing a replica",
}
_AUTOSCALING = {
    "min_replicas": integer(None, AUTOSCALING_KEYS["min_replicas"], minimum=0),
    "max_replicas": integer(None, AUTOSCALING_KEYS["max_replicas"], minimum=1),
    "initial_replicas": integer(None, AUTOSCALING_KEYS["initial_replicas"], minimum=0),
    "target_ongoing_requests": number(None, AUTOSCALING_KEYS["target_ongoing_requests"], above=0),
    "upscale_delay_s": number(None, AUTOSCALING_KEYS["upscale_delay_s"], minimum=0),
    "downscale_delay_s": number(None, AUTOSCALING_KEYS["downscale_delay_s"], minimum=0),
}

FIELDS: dict[str, dict] = {
    "model": string(DEMO_MODEL, "rayctl-demo (built locally), a local checkpoint folder, or a Hugging Face id"),
    "engine": choice(("auto", "transformers", "vllm"), "auto",
                     "auto (vllm on a cluster with GPUs and vLLM installed, else transformers), transformers "
                     "(rayctl's own app; CPU or GPU) or vllm (Ray Serve LLM: ray.serve.llm)"),
    "engine_kwargs": mapping(None, "extra vLLM engine arguments (engine vllm only), e.g. "
                                   "{tensor_parallel_size: 2, max_model_len: 4096}"),
    "replicas": {"anyOf": [{"enum": ["auto"]}, {"type": "integer", "minimum": 1, "maximum": 1000}],
                 "default": "auto", "description": "fixed number of replicas, or auto: one per node of the cluster "
                                                   "(one per GPU on GPU clusters); leave out when using autoscaling",
                 "x-error": "replicas is auto or a whole number from 1 to 1000, got {got}"},
    "autoscaling": mapping(None, "min_replicas, max_replicas, target_ongoing_requests, ... (replaces replicas)",
                           properties=_AUTOSCALING, additionalProperties=False, required=["max_replicas"],
                           **{"x-unknown": {"what": "autoscaling field"}, "x-missing": "autoscaling needs {key}"}),
    "num_cpus": number(0.25, "CPUs reserved per replica (small by default so a replica never starves "
                             "training jobs on the same cluster)", above=0),
    "num_gpus": auto_or_number("auto", "GPUs per replica: auto (1 when the cluster has a GPU per replica, else 0) "
                                       "or a number"),
    "threads": integer(None, "torch threads per replica on CPU (default: max(1, num_cpus))", minimum=1),
    "max_tokens": integer(64, "completion tokens when a request does not say", minimum=1, maximum=32768),
    "max_tokens_limit": integer(512, "most completion tokens a request may ask for", minimum=1, maximum=32768),
    "max_ongoing_requests": integer(None, f"requests a replica accepts at once (default: {DEFAULT_MAX_ONGOING} for "
                                          "transformers; Ray Serve LLM's own default for vllm)", minimum=1),
    "route_prefix": string("/", "HTTP path prefix of the app"),
    "app_name": string(None, "Serve application name (default: the recipe name)"),
    "ready_timeout_s": number(300, "seconds to wait for the replicas to come up before failing", above=0),
}
REQUIRED: tuple = ()


def _check_autoscaling(value: dict) -> list:
    lo, hi = value.get("min_replicas", 1), value["max_replicas"]
    if lo > hi:
        return [(("min_replicas",), f"min_replicas ({lo}) is above max_replicas ({hi})", False)]
    return []


FIELD_CHECKS = {"autoscaling": _check_autoscaling}


def extra(raw: dict, wl: dict) -> list:
    out = []
    if "replicas" in raw and "autoscaling" in raw:
        out.append((("autoscaling",), "give either replicas or autoscaling, not both", True))
    if wl.get("engine_kwargs") and wl["engine"] == "transformers":
        out.append((("engine_kwargs",), "engine_kwargs are vLLM engine arguments; engine is transformers", False))
    if not str(wl["route_prefix"]).startswith("/"):
        out.append((("route_prefix",), f"route_prefix starts with '/', got '{wl['route_prefix']}'", False))
    if wl["max_tokens"] > wl["max_tokens_limit"]:
        out.append((("max_tokens",), f"max_tokens ({wl['max_tokens']}) is above max_tokens_limit "
                                     f"({wl['max_tokens_limit']})", False))
    return out
