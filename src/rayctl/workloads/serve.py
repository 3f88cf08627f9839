"""Built-in `serve` workload: an OpenAI-compatible completion server on Ray Serve.

This module holds the settings, the job specs and the job itself; the Serve application
(routes, the model replica, the token counter) is in `serve_app.py`.

The job (contract 3) starts Serve on $RAYCTL_SERVE_HOST:$RAYCTL_SERVE_PORT, deploys the
app under the recipe's name, checks the route over real HTTP, prints a metrics line
with `url`, and exits; Serve keeps the app running. `python -m
rayctl.workloads.serve --delete APP` (see `stop_spec`) removes it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.error
import urllib.request

from .. import protocol
from . import common, demo_model, serve_llm
from .serve_app import build_app
from ..recipe.kinds.serve import AUTOSCALING_KEYS, FIELDS, KIND  # noqa: F401  (the one definition of the fields)

ENV_HOST = "RAYCTL_SERVE_HOST"
ENV_PORT = "RAYCTL_SERVE_PORT"
DEFAULT_PORT = 8000


def settings(recipe) -> dict:
    wl = common.with_defaults(recipe.workload, FIELDS)
    wl["model"] = demo_model.resolve(wl["model"], common.recipe_dir(recipe))
    wl["app_name"] = wl.get("app_name") or recipe.name
    wl["route_prefix"] = "/" + str(wl["route_prefix"]).strip("/") if wl["route_prefix"] != "/" else "/"
    if "replicas" not in (recipe.workload or {}) and wl.get("autoscaling"):
        wl["replicas"] = None
    return wl


def _min_replicas(wl: dict) -> int:
    a = wl.get("autoscaling")
    if a:
        return max(1, int(a.get("initial_replicas", a.get("min_replicas", 1)) or 0))
    return 1 if wl["replicas"] in (None, "auto") else int(wl["replicas"])


def auto_replicas(setting, nodes: int, total_gpu: float) -> int:
    """`replicas: auto` on this cluster: one per GPU when replicas take GPUs, else one per node."""
    per_gpu = 1.0 if setting in (None, "auto") else float(setting)
    if per_gpu > 0 and total_gpu >= per_gpu:
        return max(1, int(total_gpu // per_gpu))
    return max(1, int(nodes))


def _replica_nodes(app_name: str) -> list[str]:
    """Node ids of the app's running model replicas (from Serve's own status)."""
    try:
        app = (_serve_details().get("applications") or {}).get(app_name) or {}
        dep = (app.get("deployments") or {}).get("OpenAICompletions") or {}
        return [r.get("node_id") for r in dep.get("replicas") or [] if r.get("state") == "RUNNING"]
    except Exception:  # status is best effort: the app itself answered already
        return []


def job_spec(recipe, run_id: str):
    wl = settings(recipe)
    serve_llm.preflight(recipe, wl)
    n = _min_replicas(wl)
    spec = common.make_spec(recipe, run_id, "serve", wl, needs_cpus=n * wl["num_cpus"],
                            needs_gpus=n * serve_llm.gpus_per_replica(wl) if wl["engine"] == "vllm" else
                            0 if wl["num_gpus"] == "auto" else n * wl["num_gpus"], detached=True,
                            metadata={"serve_app": wl["app_name"], "route_prefix": wl["route_prefix"]})
    for k in (ENV_HOST, ENV_PORT):  # the launcher may set these for the cluster it runs
        if os.environ.get(k):
            spec.runtime_env["env_vars"].setdefault(k, os.environ[k])
    return spec


def stop_spec(recipe, run_id: str, app_name: str | None = None):
    """A job that deletes the app (works for local and remote clusters alike)."""
    wl = settings(recipe)
    name = app_name or wl["app_name"]
    import shlex

    return common.make_spec(recipe, run_id, "serve", wl, needs_cpus=0, args=f"--delete {shlex.quote(name)}",
                            metadata={"serve_app": name, "action": "delete"})


# ---------------------------------------------------------------- the job

def _http_options() -> tuple[str, int]:
    host = os.environ.get(ENV_HOST) or ""
    port_s = os.environ.get(ENV_PORT) or ""
    try:
        port = int(port_s) if port_s else DEFAULT_PORT
    except ValueError:
        raise common.WorkloadError(f"${ENV_PORT} must be a port number, got {port_s!r}") from None
    if not host:
        import ray.util

        host = ray.util.get_node_ip_address()
    return host, port


def _serve_details() -> dict:
    from ray.serve.context import _get_global_client

    return _get_global_client().get_serve_details()


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main(p: dict) -> None:
    wl = p["workload"]
    ray = common.connect()
    from ray import serve

    _, total_gpu = common.cluster_totals()
    engine = serve_llm.pick(wl, total_gpu)
    if wl["replicas"] == "auto" and not wl.get("autoscaling"):
        per = serve_llm.gpus_per_replica(wl) if engine == "vllm" else wl["num_gpus"]
        wl["replicas"] = auto_replicas(per, len(common.alive_nodes()), total_gpu)
    n = _min_replicas(wl)
    wl["num_gpus"] = (serve_llm.gpus_per_replica(wl) if engine == "vllm"
                      else common.gpus_per_replica(wl["num_gpus"], n, total_gpu))
    common.wait_for_resources(n * float(wl["num_cpus"]), n * float(wl["num_gpus"]),
                              float(wl["resource_timeout_s"]), f"serving with {n} replica(s)")
    host, port = _http_options()
    # Serve runs a proxy on every node, all on host:port: the nodes of a local multi-node
    # cluster share one machine, so only the head's proxy can bind it there.
    where = {"proxy_location": "HeadOnly"} if p.get("target") == "local" and len(common.alive_nodes()) > 1 else {}
    serve.start(http_options={"host": host, "port": port}, **where)
    actual = _serve_details().get("http_options") or {}
    a_host, a_port = actual.get("host", host), int(actual.get("port", port))
    if (a_host, a_port) != (host, port):
        print(f"rayctl: Serve was already running on this cluster at {a_host}:{a_port}; the app joins it there "
              f"(asked for {host}:{port})", flush=True)
        host, port = a_host, a_port
    url_host = ray.util.get_node_ip_address() if host in ("0.0.0.0", "::", "") else host
    base = f"http://{url_host}:{port}{'' if wl['route_prefix'] == '/' else wl['route_prefix']}"
    apps = (serve_llm.apps(wl, p.get("resources") or {}) if engine == "vllm"
            else [(wl["app_name"], wl["route_prefix"], build_app(wl))])
    print(f"rayctl: deploying Serve app '{wl['app_name']}' ({wl['model']}) at {base}", flush=True)
    err: list = []

    def deploy():
        try:
            for name, prefix, app in apps:
                serve.run(app, name=name, route_prefix=prefix, blocking=False)
        except BaseException as e:
            err.append(e)

    t = threading.Thread(target=deploy, name="rayctl-serve-deploy", daemon=True)
    t.start()
    t.join(timeout=float(wl["ready_timeout_s"]))
    if t.is_alive() or err:
        why = (f"{type(err[0]).__name__}: {err[0]}" if err else
               f"replicas not running after {wl['ready_timeout_s']:g} s (free: {ray.available_resources()})")
        for name, _, _ in apps:
            try:
                serve.delete(name, _blocking=False)
            except Exception:
                pass
        raise common.WorkloadError(f"Serve app '{wl['app_name']}' failed to start: {why}")
    # Real HTTP through the proxy before saying it is up.
    deadline = time.monotonic() + 60
    status, body = 0, b""
    while time.monotonic() < deadline:
        try:
            status, body = _get(f"{base}/-/rayctl/metrics", timeout=10)
            if status == 200:
                break
        except OSError as e:
            body = str(e).encode()
        time.sleep(1)
    if status != 200:
        raise common.WorkloadError(f"Serve app deployed but {base}/-/rayctl/metrics does not answer "
                                   f"(status {status}: {body[:200]!r})")
    replicas = wl.get("replicas") or f"autoscaling {wl['autoscaling']}"
    print(f"rayctl: serving {wl['model']} at {base}/v1/completions and {base}/v1/chat/completions "
          f"({replicas} replica(s)); counters at {base}/-/rayctl/metrics", flush=True)
    protocol.metrics(url=base, app=wl["app_name"], engine=engine, route_prefix=wl["route_prefix"], model=wl["model"],
                   metrics_url=f"{base}/-/rayctl/metrics", replicas=wl.get("replicas"),
                   autoscaling=wl.get("autoscaling"), nodes_used=common.nodes_used(_replica_nodes(wl["app_name"])))


def delete(app_name: str) -> None:
    ray = common.connect()
    from ray import serve

    try:
        apps = _serve_details().get("applications") or {}
    except Exception:
        apps = {}
    if app_name not in apps:
        print(f"rayctl: no Serve app '{app_name}' on this cluster; nothing to delete", flush=True)
        protocol.metrics(deleted=False, app=app_name)
        return
    serve.delete(app_name)
    if serve_llm.counter_app_name(app_name) in apps:  # engine vllm's counter app
        serve.delete(serve_llm.counter_app_name(app_name))
    print(f"rayctl: deleted Serve app '{app_name}'", flush=True)
    protocol.metrics(deleted=True, app=app_name)
    del ray


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--delete":
        common.run_main(lambda _p: delete(sys.argv[2]))
    else:
        common.run_main(main)
