"""serve end to end: a detached Serve app answering real HTTP, token counters, deletion."""

import json
import urllib.error
import urllib.request

import pytest

from jobs import submit
from raycluster import free_port

pytestmark = [pytest.mark.slow]


def post(url, body, timeout=60):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("content-type", "")


def get(url, timeout=30):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


@pytest.mark.timeout(400)
def test_openai_routes_counters_and_delete(launch, ray_address, repo, monkeypatch):
    from rayctl import recipe as R
    from rayctl.workloads import serve

    monkeypatch.setenv("RAYCTL_SERVE_HOST", "127.0.0.2")
    monkeypatch.setenv("RAYCTL_SERVE_PORT", str(free_port()))
    job = launch(repo / "recipes" / "serve.yaml", "sv1", {"replicas": 2})
    try:
        assert job.status == "SUCCEEDED", job.logs[-4000:]  # the job ends; the app keeps serving
        url = job.metrics["url"]
        assert url.startswith("http://127.0.0.2:")
        assert job.metrics["replicas"] == 2 and job.metrics["nodes_used"] == 1
        code, body, _ = post(f"{url}/v1/completions", {"prompt": "Hello there", "max_tokens": 8})
        assert code == 200, body
        c = json.loads(body)
        assert c["object"] == "text_completion" and c["model"] == "rayctl-demo"
        u = c["usage"]
        assert u["prompt_tokens"] == len("Hello there")  # byte-level tokenizer
        assert 1 <= u["completion_tokens"] <= 8 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
        code, body, _ = post(f"{url}/v1/chat/completions",
                             {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "temperature": 0})
        assert code == 200, body
        chat = json.loads(body)
        assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["role"] == "assistant"
        assert chat["usage"]["prompt_tokens"] == len("user: hi\nassistant:")
        code, body, ctype = post(f"{url}/v1/completions", {"prompt": ["a", "bb"], "max_tokens": 3, "stream": True})
        assert code == 200 and ctype.startswith("text/event-stream")
        events = [x[len("data: "):] for x in body.split("\n\n") if x.startswith("data: ")]
        assert events[-1] == "[DONE]" and len(json.loads(events[0])["choices"]) == 2
        stream_usage = json.loads(events[0])["usage"]
        # More requests, so both replicas answer some; counters are totals over replicas.
        usages = [c["usage"], chat["usage"], stream_usage]
        for i in range(4):
            code, body, _ = post(f"{url}/v1/completions", {"prompt": f"request {i}", "max_tokens": 4})
            assert code == 200
            usages.append(json.loads(body)["usage"])
        code, counters = get(f"{url}/-/rayctl/metrics")
        assert code == 200
        assert counters == {"requests": len(usages),
                            "input_tokens": sum(u["prompt_tokens"] for u in usages),
                            "output_tokens": sum(u["completion_tokens"] for u in usages)}
        # Bad requests are OpenAI-style errors, not tracebacks.
        code, body, _ = post(f"{url}/v1/completions", {"prompt": 3})
        assert code == 400 and json.loads(body)["error"]["param"] == "prompt"
        code, body, _ = post(f"{url}/v1/completions", {"prompt": "x", "max_tokens": 100000})
        assert code == 400 and "limit" in json.loads(body)["error"]["message"]
        code, body, _ = post(f"{url}/v1/nope", {})
        assert code == 404
        code, models = get(f"{url}/v1/models")
        assert code == 200 and models["data"][0]["id"] == "rayctl-demo"
        assert get(f"{url}/-/rayctl/metrics")[1]["requests"] == len(usages)  # errors are not counted

        # The trap: replicas hold CPU, so a 2 x 1-CPU training job cannot start on 2 CPUs.
        # It waits resource_timeout_s, then fails saying why, instead of queueing forever.
        starved = launch(repo / "recipes" / "train.yaml", "sv-train",
                         {"workers": 2, "cpus_per_worker": 1, "resource_timeout_s": 5})
        assert starved.status == "FAILED"
        assert "training with 2 worker(s) needs 2 CPU and 0 GPU; after 5 s only 1.5 CPU" in starved.logs
        assert starved.seconds < 60
    finally:
        rec = R.load(repo / "recipes" / "serve.yaml")
        gone = submit(ray_address, serve.stop_spec(rec, "sv1-stop"), timeout=120)
    assert gone.status == "SUCCEEDED", gone.logs[-3000:]
    assert gone.metrics == {"deleted": True, "app": "demo-serve"}
    code, _ = get(f"{url}/-/rayctl/metrics")
    assert code == 404
