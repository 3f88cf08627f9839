"""The `ray.data.llm` engines of the built-in `batch-infer` workload.

* engines `vllm` and `sglang`: a `vLLMEngineProcessorConfig` / `SGLangEngineProcessorConfig`
  built from the recipe (model, batch size, concurrency = the cluster's GPUs / GPUs per
  engine unless set, sampling params, the plan's accelerator type when the cluster has it,
  `engine_kwargs` passed through) and `build_processor`; token counts and engine time come
  from the processor's output columns `num_input_tokens`, `num_generated_tokens`,
  `time_taken_llm`;
* engine `http`: an `HttpRequestProcessorConfig` posting each prompt to
  `ENDPOINT/chat/completions` (OpenAI style), the API key (if any) from `$RAYCTL_API_KEY`,
  which `rayctl launch` hands over as a secret. Ray's HTTP stage retries only
  429/408/502/503/504 and returns any other answer as a row, so rayctl's session
  (`CheckedSession`) checks every response's status itself: 429/408/500/502/503/504 and
  connection errors are retried with exponential backoff up to `max_retries`, then the run
  fails with the endpoint, status and the API's own message; any other non-2xx fails at
  once. Tokens come from each response's `usage`.

`build_processor` calls `ray.init()` when no cluster is connected: the processors are only
ever built inside the job (`build`, after `common.connect()`); the `*_config` functions
build configs only and never start Ray.
"""

from __future__ import annotations

import os
import time

from . import common, demo_model

API_KEY_ENV = "RAYCTL_API_KEY"  # the job's copy of the recipe's api_key_env (a secret, never in the payload)
RETRY_STATUS = (408, 429, 500, 502, 503, 504)
CHAT_ROUTE = "/chat/completions"
HTTP_CPUS = 0.25  # an HTTP worker, and each pre/postprocess task, mostly waits: a quarter CPU


def gpus_per_engine(wl: dict) -> int:
    kw = wl.get("engine_kwargs") or {}
    tp = int(kw.get("tensor_parallel_size", kw.get("tp_size", 1)) or 1)
    pp = int(kw.get("pipeline_parallel_size", kw.get("pp_size", 1)) or 1)
    return max(1, tp * pp)


def concurrency(wl: dict, total_gpu: float):
    """The recipe's concurrency (int or (min, max)); unset: one engine per `gpus_per_engine` GPUs."""
    conc = wl.get("concurrency")
    if wl.get("concurrency_set") is False or conc is None:
        return max(1, int(total_gpu // gpus_per_engine(wl)))
    if isinstance(conc, (list, tuple)):
        lo, hi = int(conc[0]), int(conc[1])
        return (lo, hi) if lo != hi else lo
    return int(conc)


def accelerator_type(accelerators: list, cluster_resources: dict) -> str | None:
    """The plan's accelerator (e.g. 'L4' from 'L4:1') when the cluster's nodes advertise it to Ray."""
    for acc in accelerators or ():
        name = str(acc).split(":")[0].strip()
        if name and f"accelerator_type:{name}" in cluster_resources:
            return name
    return None


def sampling_params(engine: str, wl: dict) -> dict:
    out = {"temperature": float(wl["temperature"]), "top_p": float(wl["top_p"])}
    out["max_new_tokens" if engine == "sglang" else "max_tokens"] = int(wl["max_new_tokens"])
    return out


def processor_config(engine: str, wl: dict, total_gpu: float, accelerator: str | None = None):
    """The Ray Data LLM processor config for engine vllm or sglang (builds no processor, starts no Ray)."""
    kw = dict(engine_kwargs=dict(wl.get("engine_kwargs") or {}), concurrency=concurrency(wl, total_gpu),
              batch_size=int(wl["batch_size"]), accelerator_type=accelerator,
              chat_template_stage=False, tokenize_stage=True, detokenize_stage=True)
    model = demo_model.local_path(wl["model"])
    if engine == "sglang":
        from ray.data.llm import SGLangEngineProcessorConfig

        return SGLangEngineProcessorConfig(model_source=model, **kw)
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(model_source=model, **kw)


def _prompt(row: dict, col: str) -> str:
    if col not in row:
        raise common.WorkloadError(f"input has no column '{col}' (columns: {', '.join(row)}); "
                                   "set workload.prompt_column")
    return "" if row[col] is None else str(row[col])


def engine_row_fns(engine: str, wl: dict, columns: list):
    """(preprocess, postprocess) for a vllm/sglang processor: prompt + sampling params in; the
    input columns + generated_text + token counts + engine seconds out."""
    col, keep, sampling = wl["prompt_column"], list(columns), sampling_params(engine, wl)

    def pre(row):
        prompt = _prompt(row, col)
        return {**{k: row[k] for k in keep}, "prompt": prompt, "sampling_params": dict(sampling)}

    def post(row):
        return {**{k: row[k] for k in keep}, "generated_text": row.get("generated_text") or "",
                "input_tokens": int(row.get("num_input_tokens") or 0),
                "output_tokens": int(row.get("num_generated_tokens") or 0),
                "llm_s": float(row.get("time_taken_llm") or 0.0)}

    return pre, post


# ---------------------------------------------------------------- engine http


def chat_url(endpoint: str) -> str:
    return endpoint.rstrip("/") + CHAT_ROUTE


def _shown(url: str) -> str:
    from ..redact import redact_url

    return redact_url(url)


class CheckedSession:
    """`session_factory` for Ray's HTTP stage: an aiohttp session whose middleware checks every
    response's status, retries 429/408/500/502/503/504 and connection errors with backoff, and
    raises a WorkloadError (which fails the run) when a request cannot succeed."""

    def __init__(self, url: str, max_retries: int, wait_s: float):
        self.url, self.max_retries, self.wait_s = url, int(max_retries), float(wait_s)

    def __call__(self):
        import aiohttp

        return aiohttp.ClientSession(middlewares=(self._checked,))

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        wait = self.wait_s * (2 ** attempt)
        try:
            if retry_after is not None:
                wait = max(wait, min(60.0, float(retry_after)))
        except ValueError:
            pass
        return wait

    async def _checked(self, req, handler):
        import asyncio

        import aiohttp

        attempt = 0
        while True:
            try:
                resp = await handler(req)
            except (asyncio.TimeoutError, aiohttp.ClientConnectionError) as e:
                if attempt >= self.max_retries:
                    raise common.WorkloadError(
                        f"engine http: no answer from {_shown(self.url)} after {attempt + 1} attempt(s) "
                        f"({type(e).__name__}: {e}); check workload.endpoint and that the server is up") from None
                await asyncio.sleep(self._wait(attempt, None))
                attempt += 1
                continue
            if resp.status < 300:
                return resp
            try:
                body = (await resp.text())[:400]
            except Exception:  # noqa: BLE001 - the status is what matters
                body = ""
            retry_after = resp.headers.get("Retry-After")
            resp.release()
            if resp.status in RETRY_STATUS and attempt < self.max_retries:
                wait = self._wait(attempt, retry_after)
                print(f"rayctl: engine http: HTTP {resp.status} from {_shown(self.url)}; retry "
                      f"{attempt + 1}/{self.max_retries} in {wait:.1f} s", flush=True)
                await asyncio.sleep(wait)
                attempt += 1
                continue
            raise common.WorkloadError(_failure(self.url, resp.status, body, attempt))


def _failure(url: str, status: int, body: str, retries: int) -> str:
    import json

    msg = body.strip()
    try:
        err = json.loads(body).get("error")
        msg = (err.get("message") if isinstance(err, dict) else str(err)) or msg
    except (ValueError, AttributeError):
        pass
    msg = " ".join(str(msg).split())[:300]
    after = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
    hint = {401: "; check the key in workload.api_key_env", 403: "; check the key in workload.api_key_env",
            404: "; check workload.endpoint (a base URL such as https://api.openai.com/v1) and workload.model",
            429: "; rate limited: lower workload.qps or concurrency, or raise max_retries"}.get(status, "")
    return f"engine http: {_shown(url)} answered HTTP {status}{after}: {msg or '(no message)'}{hint}"


def http_config(wl: dict, api_key: str | None):
    """The HttpRequestProcessorConfig for engine http (builds no processor, starts no Ray)."""
    from ray.data.llm import HttpRequestProcessorConfig

    url = chat_url(wl["endpoint"])
    conc = wl.get("concurrency") or 1
    if isinstance(conc, (list, tuple)):
        conc = (int(conc[0]), int(conc[1])) if int(conc[0]) != int(conc[1]) else int(conc[0])
    return HttpRequestProcessorConfig(
        url=url, headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        qps=int(wl["qps"]) if wl.get("qps") else None, concurrency=conc, batch_size=int(wl["batch_size"]),
        max_retries=0,  # rayctl's session retries (and checks every status) itself
        http_request_stage={"num_cpus": HTTP_CPUS},
        session_factory=CheckedSession(url, int(wl["max_retries"]), float(wl["retry_wait_s"])))


def http_row_fns(wl: dict, columns: list):
    """(preprocess, postprocess) for the HTTP processor: an OpenAI chat request per prompt in; the
    input columns + generated_text + the response's usage out."""
    col, keep, model = wl["prompt_column"], list(columns), wl["model"]
    url = chat_url(wl["endpoint"])
    params = {"temperature": float(wl["temperature"]), "top_p": float(wl["top_p"]),
              "max_tokens": int(wl["max_new_tokens"])}

    def pre(row):
        prompt = _prompt(row, col)
        return {**{k: row[k] for k in keep},
                "payload": {"model": model, "messages": [{"role": "user", "content": prompt}], **params}}

    def post(row):
        resp = row.get("http_response")
        resp = resp if isinstance(resp, dict) else {}
        choices = resp.get("choices")
        usage = resp.get("usage")
        if not choices or not isinstance(usage, dict):
            what = "usage" if choices else "choices"
            raise common.WorkloadError(f"engine http: {_shown(url)} answered without '{what}' (not an OpenAI-style "
                                       f"chat completion): {str(resp)[:200]}")
        first = choices[0] if isinstance(choices, (list, tuple)) else {}
        text = ((first.get("message") or {}).get("content") if isinstance(first, dict) else None) or ""
        return {**{k: row[k] for k in keep}, "generated_text": str(text),
                "input_tokens": int(usage.get("prompt_tokens") or 0),
                "output_tokens": int(usage.get("completion_tokens") or 0), "llm_s": 0.0}

    return pre, post


def http_metrics(wl: dict) -> dict:
    """What an http run reports besides the counts: where it sent the prompts (for pricing)."""
    out = {"endpoint": _shown(wl["endpoint"]), "api_model": wl["model"]}
    if wl.get("endpoint_run"):
        out["endpoint_run"] = wl["endpoint_run"]
    if wl.get("provider"):
        out["provider"] = wl["provider"]
    return out


# ---------------------------------------------------------------- in the job


class _Count:
    """Adds each finished batch's rows/tokens/engine seconds to the progress Counter actor."""

    def __init__(self, counter):
        self.counter = counter

    def __call__(self, batch: dict) -> dict:
        n = len(batch["input_tokens"])
        llm_s = batch.pop("llm_s", None)
        self.counter.add.remote(n, int(batch["input_tokens"].sum()), int(batch["output_tokens"].sum()),
                                gen_s=float(llm_s.sum()) if llm_s is not None else 0.0)
        return batch


def build(ds, wl: dict, engine: str, columns: list, counter, accelerators: list | None = None):
    """The dataset through engine vllm, sglang or http (inside the job: the cluster is connected)."""
    import ray
    from ray.data.llm import build_processor

    if not ray.is_initialized():  # build_processor would start a local Ray of its own
        raise RuntimeError("llm_engines.build runs inside the job, after common.connect()")
    total_gpu = float(ray.cluster_resources().get("GPU", 0))
    if engine == "http":
        key = os.environ.get(API_KEY_ENV) if wl.get("api_key_env") else None
        if wl.get("api_key_env") and not key:
            raise common.WorkloadError(f"the API key (workload.api_key_env: {wl['api_key_env']}) did not reach the "
                                       "job; launch it with `rayctl launch` from a shell where it is set")
        config = http_config(wl, key)
        pre, post = http_row_fns(wl, columns)
        print(f"rayctl: engine http: {_shown(config.url)}, model {wl['model']}, concurrency {config.concurrency}, "
              f"batch_size {config.batch_size}" + (f", qps {config.qps} per worker" if config.qps else ""),
              flush=True)
    else:
        acc = accelerator_type(accelerators or [], ray.cluster_resources())
        config = processor_config(engine, wl, total_gpu, acc)
        pre, post = engine_row_fns(engine, wl, columns)
        print(f"rayctl: engine {engine}: model {config.model_source}, concurrency {config.concurrency}, "
              f"batch_size {config.batch_size}" + (f", accelerator {acc}" if acc else ""), flush=True)
    t0 = time.perf_counter()
    light = {"num_cpus": HTTP_CPUS} if engine == "http" else None
    processor = build_processor(config, preprocess=pre, postprocess=post, preprocess_map_kwargs=light,
                                postprocess_map_kwargs=light)
    print(f"rayctl: engine {engine}: processor built in {time.perf_counter() - t0:.1f} s", flush=True)
    out = processor(ds)
    return out.map_batches(_Count(counter), batch_format="numpy", batch_size=None, num_cpus=0.1) \
        if counter is not None else out
