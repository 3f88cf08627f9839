"""The `vllm` engine of the built-in `serve` workload: Ray Serve LLM (`ray.serve.llm`).

`engine: auto` picks vllm on a cluster with GPUs and vLLM installed, transformers (the
app in `serve_app.py`) otherwise; `serve.py` asks `pick` and deploys what `apps` returns.

With vllm, two Serve applications are deployed:

* the recipe's app (`app_name`, at `route_prefix`): `ray.serve.llm.build_openai_app` over
  one `LLMConfig` (the recipe's model, `engine_kwargs` passed through to vLLM, the
  accelerator type the plan provisioned, `replicas`/`autoscaling` as the deployment
  config), with an ingress that subclasses Ray's `OpenAiIngress` only to count each
  answer's `usage`;
* its counter app (`<app_name>--rayctl`, at `<route_prefix>/-/rayctl`): serve_app's
  one-replica `TokenCounter`, which answers `GET <route_prefix>/-/rayctl/metrics` (Serve
  routes a path to the longest matching prefix), so the token-counter contract
  (`{"requests", "input_tokens", "output_tokens"}`) is the transformers app's.

`ray.serve.llm` raises ImportError unless vLLM (or SGLang) is installed: it is imported
only inside the functions that deploy, on the cluster. What rayctl passes to `LLMConfig`
is built by `llm_config_kwargs` from plain values (tests construct the config from it).
"""

from __future__ import annotations

import json
import typing

from . import common, demo_model

COUNTER_SUFFIX = "--rayctl"
COUNTED = ("chat", "completions")  # OpenAiIngress call methods whose answers carry usage


def pick(wl: dict, total_gpu: float) -> str:
    """The engine this cluster runs: auto -> vllm with GPUs and vLLM, else transformers.
    engine vllm without vLLM or GPUs fails the job with a one-line reason."""
    from .batch_engines import pick_engine

    return pick_engine(wl, total_gpu)


def preflight(recipe, wl: dict) -> None:
    """On the client, before anything starts: `engine: vllm` on the local target (this
    machine's Python runs the job) without vLLM installed is an input error (exit 2)."""
    import importlib.util

    if wl["engine"] != "vllm" or getattr(recipe, "target", "local") != "local":
        return
    if importlib.util.find_spec("vllm") is None:
        from . import _fail

        _fail(recipe, ("workload", "engine"),
              "engine vllm needs vLLM, and it is not installed in this Python (the local target runs the job "
              "here); install rayctl's gpu extra (pip install 'rayctl[gpu]') on a machine with a GPU, or use "
              "engine: auto or transformers (nothing was started)")


def counter_app_name(app_name: str) -> str:
    return f"{app_name}{COUNTER_SUFFIX}"


def counter_route(route_prefix: str) -> str:
    return ("" if route_prefix == "/" else route_prefix.rstrip("/")) + "/-/rayctl"


def gpus_per_replica(wl: dict) -> int:
    """GPUs one vLLM replica takes: tensor_parallel_size x pipeline_parallel_size."""
    kw = wl.get("engine_kwargs") or {}
    return max(1, int(kw.get("tensor_parallel_size") or 1)) * max(1, int(kw.get("pipeline_parallel_size") or 1))


def served_name(wl: dict) -> str:
    """The name clients pass as `model` (as the transformers app names it)."""
    return common.DEMO_MODEL if demo_model.is_demo(wl["model"]) else str(wl["model"])


def accelerator_type(wanted: list, cluster_resources: dict, known: list) -> str | None:
    """The accelerator type to pin the replicas to: the plan's accelerator (the recipe's
    `resources.accelerators`, NAME:COUNT) that the cluster's nodes carry as Ray's
    `accelerator_type:NAME` label, else the one label the cluster has; None when Ray Serve
    LLM does not know the name or the cluster has no (or several) labels (no pinning).

    SkyPilot spells some names differently from Ray (A100-80GB vs A100-80G)."""
    labels = [k.split(":", 1)[1] for k in cluster_resources if k.startswith("accelerator_type:")]
    known_l = {k.lower(): k for k in known}

    def ray_name(name: str) -> str | None:
        n = name.split(":", 1)[0].strip().lower()
        for cand in (n, n[:-1] if n.endswith("gb") else n, "a10g" if n == "a10" else n):
            if cand in known_l:
                return known_l[cand]
        return None

    present = {lab.lower(): lab for lab in labels}
    for w in wanted:
        r = ray_name(str(w))
        if r is not None and r.lower() in present:
            return r
    if len(labels) == 1 and labels[0].lower() in known_l:
        return known_l[labels[0].lower()]
    return None


def deployment_config(wl: dict) -> dict:
    d: dict = {}
    if wl.get("max_ongoing_requests"):
        d["max_ongoing_requests"] = int(wl["max_ongoing_requests"])
    if wl.get("autoscaling"):
        d["autoscaling_config"] = dict(wl["autoscaling"])
    else:
        d["num_replicas"] = int(wl.get("replicas") or 1)
    return d


def llm_config_kwargs(wl: dict, accelerator: str | None) -> dict:
    """The keyword arguments of `ray.serve.llm.LLMConfig` for this workload."""
    kw: dict = {
        "model_loading_config": {"model_id": served_name(wl), "model_source": demo_model.local_path(wl["model"])},
        "engine_kwargs": dict(wl.get("engine_kwargs") or {}),
        "deployment_config": deployment_config(wl),
    }
    if accelerator:
        kw["accelerator_type"] = accelerator
    return kw


def serving_args(wl: dict, accelerator: str | None, llm_config) -> dict:
    """`build_openai_app`'s argument: the one model, and rayctl's counting ingress."""
    return {"llm_configs": [llm_config],
            "ingress_cls_config": {"ingress_cls": counting_ingress(),
                                   "ingress_extra_kwargs": {"rayctl_counter_app": counter_app_name(wl["app_name"])}}}


def apps(wl: dict, payload_resources: dict) -> list:
    """[(name, route_prefix, Serve application)] to deploy, in order (counter first)."""
    import os

    if os.environ.get("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING") == "1":
        raise common.WorkloadError("RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING=1 makes Ray Serve LLM skip its OpenAI "
                                   "ingress, which rayctl's token counters hook into; unset it for engine vllm")
    import ray
    from ray.serve.llm import LLMConfig, build_openai_app  # ImportError without vLLM/SGLang

    from ray.llm._internal.serve.core.configs.accelerators import AcceleratorType
    from .serve_app import token_counter

    acc = accelerator_type(list(payload_resources.get("accelerators") or []), ray.cluster_resources(),
                           [t.value for t in AcceleratorType])
    config = LLMConfig(**llm_config_kwargs(wl, acc))
    print(f"rayctl: engine vllm (Ray Serve LLM): model {served_name(wl)}, engine_kwargs "
          f"{json.dumps(config.engine_kwargs, sort_keys=True)}, accelerator_type {acc or 'any'}, "
          f"{gpus_per_replica(wl)} GPU(s) per replica", flush=True)
    counter = token_counter().bind()
    return [(counter_app_name(wl["app_name"]), counter_route(wl["route_prefix"]), counter),
            (wl["app_name"], wl["route_prefix"], build_openai_app(serving_args(wl, acc, config)))]


# ---------------------------------------------------------------- counting usage

def usage_of(chunk) -> tuple[int, int] | None:
    """(prompt_tokens, completion_tokens) a response object, dict, SSE text or list of them
    carries in `usage`, or None. Streamed usage is cumulative: the last one is the total."""
    if chunk is None:
        return None
    if isinstance(chunk, (list, tuple)):
        found = None
        for c in chunk:
            found = usage_of(c) or found
        return found
    if isinstance(chunk, (bytes, str)):
        text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
        found = None
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("data:"):
                line = line[5:].strip()
            if '"usage"' not in line:
                continue
            try:
                found = usage_of(json.loads(line)) or found
            except ValueError:
                continue
        return found
    u = chunk.get("usage") if isinstance(chunk, dict) else getattr(chunk, "usage", None)
    if u is None:
        return None
    get = u.get if isinstance(u, dict) else (lambda k, d=None: getattr(u, k, d))
    try:
        return int(get("prompt_tokens") or 0), int(get("completion_tokens") or 0)
    except (TypeError, ValueError):
        return None


def is_error(chunk) -> bool:
    first = chunk[0] if isinstance(chunk, (list, tuple)) and chunk else chunk
    return type(first).__name__ == "ErrorResponse" or (isinstance(first, dict) and "error" in first)


class Tally:
    """One request's usage as it streams: `add` returns the (requests, in, out) not yet counted."""

    def __init__(self):
        self.counted = False
        self.input_tokens = self.output_tokens = 0

    def add(self, usage: tuple[int, int]) -> tuple[int, int, int] | None:
        i, o = usage
        d_in, d_out = max(0, i - self.input_tokens), max(0, o - self.output_tokens)
        first = not self.counted
        if not first and not d_in and not d_out:
            return None
        self.counted = True
        self.input_tokens, self.output_tokens = max(i, self.input_tokens), max(o, self.output_tokens)
        return (1 if first else 0), d_in, d_out


def ask_usage(body):
    """A streamed request gets `stream_options: {include_usage: true}` unless it says otherwise
    (the last chunk then carries the totals; OpenAI clients accept it)."""
    if not getattr(body, "stream", False) or getattr(body, "stream_options", None) is not None:
        return body
    try:
        ann = type(body).model_fields["stream_options"].annotation
        cls = next(a for a in (typing.get_args(ann) or (ann,)) if isinstance(a, type) and a is not type(None))
        body.stream_options = cls(include_usage=True)
    except Exception:  # an engine without stream_options: streamed tokens go uncounted
        pass
    return body


def counting_ingress():
    """Ray's OpenAiIngress, counting every chat/completions answer's usage into the counter app."""
    from ray import serve
    from ray.serve.llm.ingress import OpenAiIngress

    class RayctlOpenAiIngress(OpenAiIngress):
        def __init__(self, *args, rayctl_counter_app: str, **kwargs):
            super().__init__(*args, **kwargs)
            self._rayctl_counter_app = rayctl_counter_app
            self._rayctl_counter = None

        def _counter(self):
            if self._rayctl_counter is None:
                self._rayctl_counter = serve.get_deployment_handle("TokenCounter", app_name=self._rayctl_counter_app)
            return self._rayctl_counter

        async def _get_response(self, *, body, call_method, raw_request=None):
            counted = call_method in COUNTED
            if counted:
                body = ask_usage(body)
            tally = Tally()
            async for chunk in super()._get_response(body=body, call_method=call_method, raw_request=raw_request):
                if counted and not is_error(chunk):
                    u = usage_of(chunk)
                    delta = tally.add(u) if u is not None else None
                    if delta is not None:
                        try:
                            await self._counter().add.remote(*delta)
                        except Exception as e:  # counting never fails a request
                            print(f"rayctl: token counter unreachable: {type(e).__name__}: {e}", flush=True)
                yield chunk

    RayctlOpenAiIngress.__qualname__ = RayctlOpenAiIngress.__name__
    return RayctlOpenAiIngress
