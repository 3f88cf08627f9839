"""The Serve application of the built-in `serve` workload: one model replica (`Engine`),
the OpenAI-compatible ingress deployment and a one-replica token counter.

Routes (under `route_prefix`, default `/`):

* `POST /v1/completions`: {"prompt": str | [str], "max_tokens", "temperature", "top_p",
  "stop", "seed", "stream"} -> an OpenAI `text_completion` with `usage`;
* `POST /v1/chat/completions`: {"messages": [{"role", "content"}], ...} -> an OpenAI
  `chat.completion` (the prompt comes from the tokenizer's chat template);
* `GET /v1/models`: the served model;
* `GET /-/rayctl/metrics`: {"requests": N, "input_tokens": N, "output_tokens": N}
  summed over every replica (a one-replica counter deployment holds the totals).

`stream: true` is answered as server-sent events (the whole completion in one chunk,
then `[DONE]`), which OpenAI clients accept.
"""

from __future__ import annotations

import json
import threading
import time

from . import common, demo_model
from ..recipe.kinds.serve import DEFAULT_MAX_ONGOING


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}},
                        status_code=status)


class Engine:
    """The model in one replica: prompt(s) in, completion text and token counts out."""

    def __init__(self, model: str, threads: int, device: str):
        import torch

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.model, self.tokenizer = demo_model.load(model, device=device)
        self.tokenizer.truncation_side = "left"
        self.device = device
        limit = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.limit = int(limit)
        self.lock = threading.Lock()

    def complete(self, prompts: list[str], max_tokens: int, temperature: float, top_p: float,
                 stop: list[str], seed: int | None) -> list[dict]:
        import torch

        from .batch_engines import generated_lengths

        max_prompt = max(1, self.limit - max_tokens)
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                             max_length=max_prompt).to(self.device)
        kw = dict(max_new_tokens=max_tokens, do_sample=temperature > 0, pad_token_id=self.tokenizer.pad_token_id)
        if temperature > 0:
            kw.update(temperature=temperature, top_p=top_p)
        with self.lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(int(seed))
            out = self.model.generate(**enc, **kw)
        gen = out[:, enc["input_ids"].shape[1]:].cpu()
        lengths = generated_lengths(gen, self.tokenizer.eos_token_id)
        in_tok = enc["attention_mask"].sum(dim=1).tolist()
        results = []
        for i in range(len(prompts)):
            n = int(lengths[i])
            text = self.tokenizer.decode(gen[i, :n], skip_special_tokens=True)
            hit_eos = n < gen.shape[1] or (n > 0 and int(gen[i, n - 1]) == self.tokenizer.eos_token_id)
            finish = "stop" if hit_eos else "length"
            for s in stop:
                j = text.find(s) if s else -1
                if j >= 0:
                    text, finish = text[:j], "stop"
            results.append({"text": text, "prompt_tokens": int(in_tok[i]), "completion_tokens": n,
                            "finish_reason": finish})
        return results


def _parse_common(body: dict, defaults: dict) -> tuple[dict | None, object]:
    """(params, None) or (None, error response) for the fields both routes share."""
    p = {}
    mt = body.get("max_tokens", body.get("max_completion_tokens", defaults["max_tokens"]))
    if mt is None:
        mt = defaults["max_tokens"]
    if isinstance(mt, bool) or not isinstance(mt, int) or mt < 1:
        return None, _error(400, "max_tokens must be a whole number >= 1", param="max_tokens")
    if mt > defaults["max_tokens_limit"]:
        return None, _error(400, f"max_tokens {mt} is above this server's limit of {defaults['max_tokens_limit']}",
                            param="max_tokens")
    p["max_tokens"] = mt
    for name, default, lo, hi in (("temperature", 1.0, 0.0, 2.0), ("top_p", 1.0, 0.0, 1.0)):
        v = body.get(name, default)
        v = default if v is None else v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
            return None, _error(400, f"{name} must be a number in [{lo}, {hi}]", param=name)
        p[name] = float(v)
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 4:
        return None, _error(400, "stop must be a string or a list of up to 4 strings", param="stop")
    p["stop"] = stop
    n = body.get("n", 1)
    if n not in (1, None):
        return None, _error(400, "only n=1 is supported", param="n")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return None, _error(400, "seed must be a whole number", param="seed")
    p["seed"] = seed
    p["stream"] = bool(body.get("stream", False))
    return p, None


def token_counter():
    """The one-replica deployment holding an app's totals. It also answers `GET .../metrics`
    itself, for the vllm engine, which deploys it as its own app at `<prefix>/-/rayctl`."""
    from ray import serve

    @serve.deployment(name="TokenCounter", num_replicas=1, ray_actor_options={"num_cpus": 0})
    class TokenCounter:
        def __init__(self):
            self.requests = self.input_tokens = self.output_tokens = 0

        def add(self, requests: int, input_tokens: int, output_tokens: int) -> None:
            self.requests += requests
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens

        def get(self) -> dict:
            return {"requests": self.requests, "input_tokens": self.input_tokens,
                    "output_tokens": self.output_tokens}

        async def __call__(self, request):
            from starlette.responses import JSONResponse

            if request.url.path.rstrip("/").endswith("/metrics"):
                return JSONResponse(self.get()) if request.method == "GET" else _error(405, "use GET")
            return _error(404, f"no route {request.method} {request.url.path}; GET /-/rayctl/metrics",
                          kind="not_found_error")

    return TokenCounter


def build_app(wl: dict):
    """The Serve application (a counter deployment + the OpenAI-compatible ingress)."""
    from ray import serve

    model_name = wl["model"] if not demo_model.is_demo(wl["model"]) else common.DEMO_MODEL
    defaults = {"max_tokens": int(wl["max_tokens"]), "max_tokens_limit": int(wl["max_tokens_limit"])}

    TokenCounter = token_counter()

    @serve.deployment(name="OpenAICompletions")
    class OpenAICompletions:
        def __init__(self, counter, model: str, threads: int, device: str):
            self.counter = counter
            self.engine = Engine(model, threads, device)

        async def __call__(self, request):
            path = request.url.path
            prefix = request.scope.get("root_path", "")
            if prefix and path.startswith(prefix):
                path = path[len(prefix):] or "/"
            path = "/" + path.strip("/")
            if path == "/-/rayctl/metrics":
                if request.method != "GET":
                    return _error(405, "use GET")
                from starlette.responses import JSONResponse

                return JSONResponse(await self.counter.get.remote())
            if path == "/v1/models":
                from starlette.responses import JSONResponse

                return JSONResponse({"object": "list", "data": [
                    {"id": model_name, "object": "model", "created": 0, "owned_by": "rayctl"}]})
            if path not in ("/v1/completions", "/v1/chat/completions"):
                return _error(404, f"no route {request.method} {path}; this server has POST /v1/completions, "
                                   "POST /v1/chat/completions, GET /v1/models, GET /-/rayctl/metrics",
                              kind="not_found_error")
            if request.method != "POST":
                return _error(405, f"use POST for {path}")
            try:
                body = await request.json()
            except Exception:
                return _error(400, "request body is not valid JSON")
            if not isinstance(body, dict):
                return _error(400, "request body must be a JSON object")
            params, err = _parse_common(body, defaults)
            if err is not None:
                return err
            chat = path == "/v1/chat/completions"
            if chat:
                prompts, err = self._chat_prompt(body)
            else:
                prompts, err = self._prompts(body)
            if err is not None:
                return err
            import asyncio

            results = await asyncio.to_thread(self.engine.complete, prompts, params["max_tokens"],
                                              params["temperature"], params["top_p"], params["stop"],
                                              params["seed"])
            usage_in = sum(r["prompt_tokens"] for r in results)
            usage_out = sum(r["completion_tokens"] for r in results)
            await self.counter.add.remote(1, usage_in, usage_out)
            return self._respond(chat, results, usage_in, usage_out, params["stream"])

        def _prompts(self, body: dict):
            prompt = body.get("prompt")
            if isinstance(prompt, str):
                return [prompt], None
            if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt) and len(prompt) <= 64:
                return prompt, None
            return None, _error(400, "prompt must be a string or a list of 1 to 64 strings", param="prompt")

        def _chat_prompt(self, body: dict):
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in msgs):
                return None, _error(400, "messages must be a non-empty list of {role, content} objects with "
                                         "string content", param="messages")
            tok = self.engine.tokenizer
            if getattr(tok, "chat_template", None):
                text = tok.apply_chat_template([{"role": m["role"], "content": m["content"]} for m in msgs],
                                               add_generation_prompt=True, tokenize=False)
            else:
                text = "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant:"
            return [text], None

        def _respond(self, chat: bool, results: list, usage_in: int, usage_out: int, stream: bool):
            import uuid

            from starlette.responses import JSONResponse, StreamingResponse

            rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
            created = int(time.time())
            usage = {"prompt_tokens": usage_in, "completion_tokens": usage_out, "total_tokens": usage_in + usage_out}
            if chat:
                r = results[0]
                choices = [{"index": 0, "message": {"role": "assistant", "content": r["text"]},
                            "finish_reason": r["finish_reason"], "logprobs": None}]
                obj = "chat.completion"
            else:
                choices = [{"index": i, "text": r["text"], "logprobs": None, "finish_reason": r["finish_reason"]}
                           for i, r in enumerate(results)]
                obj = "text_completion"
            if not stream:
                return JSONResponse({"id": rid, "object": obj, "created": created, "model": model_name,
                                     "choices": choices, "usage": usage})
            if chat:
                chunks = [{"index": 0, "delta": {"role": "assistant", "content": results[0]["text"]},
                           "finish_reason": results[0]["finish_reason"], "logprobs": None}]
                cobj = "chat.completion.chunk"
            else:
                chunks, cobj = choices, "text_completion"

            def events():
                yield "data: " + json.dumps({"id": rid, "object": cobj, "created": created, "model": model_name,
                                             "choices": chunks, "usage": usage}) + "\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

    threads = wl.get("threads") or max(1, int(float(wl["num_cpus"])))
    gpus = float(wl["num_gpus"])  # resolved by main()
    device = "cuda" if gpus > 0 else "cpu"
    opts: dict = {"ray_actor_options": {"num_cpus": float(wl["num_cpus"]), "num_gpus": gpus},
                  "max_ongoing_requests": int(wl.get("max_ongoing_requests") or DEFAULT_MAX_ONGOING)}
    if wl.get("autoscaling"):
        opts["autoscaling_config"] = dict(wl["autoscaling"])
        opts["num_replicas"] = "auto"
    else:
        opts["num_replicas"] = int(wl["replicas"] or 1)
    return OpenAICompletions.options(**opts).bind(TokenCounter.bind(), wl["model"], threads, device)
