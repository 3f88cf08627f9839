"""Runs on the head node of a rayctl cloud cluster (`python -m rayctl.providers.skypilot.head`).

SkyPilot's `run` starts a user Ray cluster on every node, then execs this on the head.
It submits the workload exactly as the local target does (same entrypoint, same Ray
runtime env, with local paths replaced by where SkyPilot put them), streams the job's
logs to stdout (which SkyPilot keeps and `rayctl logs` shows, `::rayctl::` metric lines
included), and exits with the job's outcome:

- 0: the job succeeded (for serve: the app is up and the deploy job returned);
- 1: the job failed or was stopped;
- 75 (`EXIT_BUDGET`): `RAYCTL_DEADLINE` (epoch seconds, set by `rayctl launch` from
  `budget.max_hours` / `budget.max_usd`) passed: the job was stopped. The deadline is
  absolute, so it holds across spot recoveries and even if the rayctl client is gone.
- 76 (`EXIT_NODES`): on a multi-node cluster (`SKYPILOT_NUM_NODES` > 1), not every node
  joined the Ray cluster within `RAYCTL_NODES_TIMEOUT_S` (default 600): nothing was
  submitted, and a `::rayctl::` metrics line says how many of how many (`error`,
  `nodes_alive`, `nodes_wanted`). Before submitting, the runner waits for all N nodes
  to be alive (Ray's state API, what `ray list nodes` reads) and reports `nodes_alive`.

SIGTERM (SkyPilot cancelling the job) stops the Ray job before exiting.

Secrets (`secret_env` in the spec: names only) are not submitted: the job inherits them
from the Ray cluster, which `start_cluster` started from SkyPilot's `run` environment
(where the task's `secrets:` are set).

Environment: RAYCTL_JOB_SPEC (JSON, see `skypilot.remote.remote_spec`), RAYCTL_RUN_ID,
RAYCTL_DEADLINE or RAYCTL_BUDGET_SECONDS (optional), RAYCTL_RAY_ADDRESS (default
http://127.0.0.1:8265).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from ... import protocol

EXIT_BUDGET = 75
EXIT_NODES = 76
NODES_TIMEOUT_S = 600.0
NODES_POLL_S = 5.0
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def resolve_runtime_env(spec: dict, environ=os.environ) -> dict:
    """The runtime env to submit: `~` expanded.

    Secret env vars (`secret_env`) are never put into it: a runtime env is readable through
    the dashboard's Jobs API and is logged by Ray's runtime_env_agent. SkyPilot sets the
    task's `secrets:` as env vars of `run` on every node, and `start_cluster` starts Ray from
    that shell, so every Ray process of the cluster (the job's driver, its tasks and actors)
    inherits them.
    """
    env = json.loads(json.dumps(spec.get("runtime_env") or {}))
    if isinstance(env.get("working_dir"), str) and env["working_dir"].startswith("~"):
        env["working_dir"] = os.path.expanduser(env["working_dir"])
    if env.get("py_modules"):
        env["py_modules"] = [os.path.expanduser(m) if isinstance(m, str) and m.startswith("~") else m
                             for m in env["py_modules"]]
    if isinstance(env.get("env_vars"), dict):
        for k in spec.get("secret_env") or ():
            env["env_vars"].pop(k, None)
    return env


def missing_secrets(spec: dict, environ=os.environ) -> list[str]:
    """Secret env vars the job expects that this node's environment lacks (names only)."""
    return [k for k in spec.get("secret_env") or () if not environ.get(k)]


def deadline(environ=os.environ, now: float | None = None) -> float | None:
    if environ.get("RAYCTL_DEADLINE"):
        return float(environ["RAYCTL_DEADLINE"])
    if environ.get("RAYCTL_BUDGET_SECONDS"):  # a task launched by hand: budget per incarnation
        return (now or time.time()) + float(environ["RAYCTL_BUDGET_SECONDS"])
    return None


def alive_nodes(address: str) -> int:
    """Alive nodes of the Ray cluster whose dashboard is `address` (Ray's state API; token auth from the env)."""
    from ray.util.state import list_nodes

    return len(list_nodes(address=address, filters=[("state", "=", "ALIVE")], limit=10000,
                          raise_on_missing_output=False))


def wait_for_nodes(want: int, count, *, timeout_s: float = NODES_TIMEOUT_S, clock=time.monotonic,
                   sleep=time.sleep, out=sys.stdout) -> int | None:
    """Wait until `count()` (alive Ray nodes) reaches `want`: the count, or None after `timeout_s`
    (an error line was printed: which nodes are missing, nothing submitted)."""
    start, last, why = clock(), None, ""
    while True:
        try:
            n, why = int(count()), ""
        except Exception as e:  # the head's dashboard not answering yet counts as no node
            n, why = 0, f" ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        if n != last:
            out.write(f"rayctl: {n} of {want} Ray node(s) alive{why}\n")
            out.flush()
            last = n
        if n >= want:
            protocol.metrics(nodes_alive=n, stream=out)
            return n
        if clock() - start >= timeout_s:
            protocol.metrics(error=f"only {n} of {want} nodes joined the Ray cluster within {timeout_s:g} s "
                                   "(a worker node never joined; its start_cluster output is in `sky logs`); "
                                   "the job was not submitted", nodes_alive=n, nodes_wanted=want, stream=out)
            return None
        sleep(NODES_POLL_S)


def _status_name(st) -> str:
    return str(getattr(st, "value", st)).upper()


def main(environ=os.environ, client=None, sleep=time.sleep, out=sys.stdout, nodes=None,
         clock=time.monotonic) -> int:
    spec = json.loads(environ["RAYCTL_JOB_SPEC"])
    run_id = environ.get("RAYCTL_RUN_ID") or spec.get("run_id") or "rayctl"
    address = environ.get("RAYCTL_RAY_ADDRESS", "http://127.0.0.1:8265")
    want = int(environ.get("SKYPILOT_NUM_NODES") or 1)
    if want > 1:  # every node's raylet must have joined before the job is placed
        timeout_s = float(environ.get("RAYCTL_NODES_TIMEOUT_S") or NODES_TIMEOUT_S)
        if wait_for_nodes(want, nodes or (lambda: alive_nodes(address)), timeout_s=timeout_s, clock=clock,
                          sleep=sleep, out=out) is None:
            return EXIT_NODES
    if client is None:
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(address)  # Ray adds its token header when RAY_AUTH_MODE=token
    end = deadline(environ)
    sid = f"{run_id}-{int(time.time())}"
    missing = missing_secrets(spec, environ)
    if missing:
        out.write(f"rayctl: warning: secret env var(s) {', '.join(missing)} are not set on this node (pass them with "
                  "`sky launch --secret NAME` when launching the task by hand); the job runs without them\n")
        out.flush()
    kw = {}
    if spec.get("entrypoint_num_cpus"):
        kw["entrypoint_num_cpus"] = spec["entrypoint_num_cpus"]
    if spec.get("entrypoint_num_gpus"):
        kw["entrypoint_num_gpus"] = spec["entrypoint_num_gpus"]
    client.submit_job(entrypoint=spec["entrypoint"], runtime_env=resolve_runtime_env(spec, environ),
                      submission_id=sid, metadata={"rayctl_run_id": run_id, **(spec.get("metadata") or {})}, **kw)
    out.write(f"rayctl: submitted Ray job {sid} on the cluster's head\n")
    out.flush()

    stopping = {"sig": None}

    def _term(signum, _frame):
        stopping["sig"] = signum

    try:
        signal.signal(signal.SIGTERM, _term)
    except ValueError:  # not the main thread (tests)
        pass

    offset = 0
    while True:
        logs = client.get_job_logs(sid) or ""
        if len(logs) > offset:
            out.write(logs[offset:])
            out.flush()
            offset = len(logs)
        status = _status_name(client.get_job_status(sid))
        if status in TERMINAL:
            logs = client.get_job_logs(sid) or ""
            if len(logs) > offset:
                out.write(logs[offset:])
            out.write(f"rayctl: Ray job {sid} {status.lower()}\n")
            out.flush()
            return 0 if status == "SUCCEEDED" else 1
        if stopping["sig"] is not None:
            client.stop_job(sid)
            out.write(f"rayctl: cancelled; stopped Ray job {sid}\n")
            out.flush()
            return 1
        if end is not None and time.time() >= end:
            client.stop_job(sid)
            protocol.budget("budget deadline reached; job stopped", end, stream=out)
            return EXIT_BUDGET
        sleep(2.0)


if __name__ == "__main__":  # pragma: no cover - runs on the cloud
    sys.exit(main())
