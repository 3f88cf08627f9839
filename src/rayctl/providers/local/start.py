"""Starting the local head (`ray start --head` on 127.0.0.2 with its own ports), or reusing a healthy one.

Start takes 10-17 s on a small machine, so the head stays up between launches;
`rayctl down` stops it. A half-started head (an error or Ctrl-C while starting) is
stopped before the error propagates.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

from ...errors import InputError, RayctlError
from .auth import AUTH_MODE, auth_headers, ensure_auth_token
from .health import get_json, healthy, jobs_api_ready
from .ports import free_ports, worker_port_range
from .state import NODE_IP, TOKEN_ENV, LocalCluster, Status, cluster_dir, locked, read_state, temp_dir_for, write_state
from .stop import kill_token
from . import nodes as nodes_mod

START_TIMEOUT_S = float(os.environ.get("RAYCTL_START_TIMEOUT", 180))
READY_TIMEOUT_S = 60.0
_PORT_NAMES = ("port", "dashboard-port", "ray-client-server-port", "node-manager-port", "object-manager-port",
               "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
               "metrics-export-port")


def default_cpus() -> int:
    env = os.environ.get("RAYCTL_LOCAL_CPUS")
    if env:
        try:
            n = int(env)
            if n < 1:
                raise ValueError
            return n
        except ValueError:
            raise InputError(f"RAYCTL_LOCAL_CPUS must be a whole number >= 1, got {env!r}") from None
    return machine_cores()


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _ray_module_available() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise InputError("the local target needs Ray, which is not installed in this Python "
                         f"({sys.executable}); install it with: pip install 'rayctl[local]'")


def _now() -> str:
    from ...ledger import now

    return now()


def _start(cdir: Path, num_cpus: int, status: Status | None, gpus: list[str] | None = None) -> LocalCluster:
    _ray_module_available()
    temp = temp_dir_for(cdir)
    temp.mkdir(parents=True, exist_ok=True)
    log_path = cdir / "head.log"
    token_path = ensure_auth_token(cdir)
    last_err = ""
    for attempt in range(3):
        token = secrets.token_hex(12)
        ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES) + 1)))
        serve_port = free_ports(1)[0]
        while serve_port in ports.values():
            serve_port = free_ports(1)[0]
        wmin, wmax = worker_port_range()
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head",
               f"--node-ip-address={NODE_IP}", f"--dashboard-host={NODE_IP}", "--include-dashboard=true",
               f"--temp-dir={temp}", f"--num-cpus={num_cpus}", "--disable-usage-stats",
               f"--min-worker-port={wmin}", f"--max-worker-port={wmax}"]
        if gpus is not None:  # a multi-node cluster: the head's share of the GPUs
            cmd.append(f"--num-gpus={len(gpus)}")
        cmd += [f"--{k}={v}" for k, v in ports.items()]
        env = dict(os.environ)
        for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):  # the user's token is not ours
            env.pop(k, None)
        env.update({"RAY_AUTH_MODE": AUTH_MODE, "RAY_AUTH_TOKEN_PATH": str(token_path), TOKEN_ENV: token,
                    "RAY_USAGE_STATS_ENABLED": "0"})
        env.setdefault(nodes_mod.AGENT_WAIT_ENV, nodes_mod.AGENT_WAIT_MS)
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        # Jobs run `python ...` with the head's PATH: make that this Python (cron's PATH is bare).
        bindir = os.path.dirname(sys.executable)
        if env.get("PATH", "").split(os.pathsep)[0] != bindir:
            env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        with open(log_path, "ab") as log:
            log.write(f"\n--- {_now()} rayctl: {' '.join(cmd)}\n".encode())
            log.flush()
            # A new session: the head's daemons never get the terminal's Ctrl-C, and outlive this launch.
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=str(cdir))
        c = LocalCluster(address=f"http://{NODE_IP}:{ports['dashboard-port']}",
                         gcs_address=f"{NODE_IP}:{ports['port']}", node_ip=NODE_IP, ports=ports,
                         serve_host=NODE_IP, serve_port=serve_port, temp_dir=str(temp), session_name="",
                         pid=proc.pid, token=token, num_cpus=num_cpus, started_at=_now(), ray_version="",
                         auth_token_path=str(token_path))
        headers = auth_headers(c)
        try:
            rc = nodes_mod.wait_for_start(proc, START_TIMEOUT_S)
            if rc is None:
                raise RayctlError(f"the local Ray head did not start within {START_TIMEOUT_S:.0f} s; "
                                  f"see {log_path}") from None
            if rc == nodes_mod.RAYLET_DIED:  # `ray start` would wait minutes for a raylet that crashed
                proc.kill()
                kill_token(token, proc.pid)
                if attempt < 2:
                    if status:
                        status("the Ray head's raylet died while starting (a busy machine?); retrying")
                    continue
                raise RayctlError(f"the local Ray head's raylet died while starting, three times; see {log_path}")
            if rc != 0:
                tail = _log_tail(log_path)
                last_err = tail
                kill_token(token, proc.pid)
                if attempt < 2 and ("in use" in tail or "already" in tail.lower() or "bind" in tail.lower()):
                    if status:
                        status("a port was taken while starting; retrying with new ports")
                    continue
                if attempt < 2 and "timed out during startup" in tail:
                    # A loaded machine: the raylet gives the dashboard agent a fixed 15 s to start.
                    if status:
                        status("the Ray head timed out while starting (a busy machine?); retrying")
                    continue
                raise RayctlError(f"`ray start --head` failed (exit {rc}); the whole log is {log_path}; its last "
                                  f"errors:\n{tail}")
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                try:
                    v = get_json(f"{c.address}/api/version", 2.0, headers)
                    if isinstance(v, dict) and v.get("session_name") and jobs_api_ready(c.address, headers):
                        c.session_name, c.ray_version = v["session_name"], v.get("ray_version", "")
                        break
                except (OSError, ValueError, urllib.error.URLError):
                    pass
                if time.monotonic() > deadline:
                    raise RayctlError(f"the local Ray head started but its dashboard/Jobs API at {c.address} "
                                      f"did not answer within {READY_TIMEOUT_S:.0f} s; see {log_path}")
                time.sleep(0.25)
            write_state(cdir, c)
            return c
        except BaseException:
            # Half-started (error or Ctrl-C): stop what this call started, leave nothing behind.
            if proc.poll() is None:
                proc.kill()
            kill_token(token, proc.pid)
            raise
    raise RayctlError(f"`ray start --head` failed three times; last lines of {log_path}:\n{last_err}")


def _log_tail(path: Path, n: int = 6) -> str:
    """The gist of a failed `ray start`: its error lines, without Python stack frames."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    last_run = max((i for i, ln in enumerate(lines) if ln.startswith("--- ")), default=-1)
    lines = [ln.rstrip() for ln in lines[last_run + 1:]]
    keep = [ln for ln in lines if ln and not ln.startswith((" ", "\t", "Traceback", "During handling"))
            and not set(ln) <= set("^~ ")]
    return "\n".join("  " + ln for ln in keep[-n:])


def ensure_cluster(*, cpus: int | None = None, nodes: int = 1, home: Path | None = None,
                   status: Status | None = None) -> LocalCluster:
    """The running local cluster (reused when healthy), started if there is none.

    `nodes`: the head plus `nodes - 1` worker raylets (providers/local/nodes.py) on
    127.0.0.3, .4, ...; a running cluster with fewer nodes gets workers added (the head
    keeps running), one with more is reused as it is, and dead workers it owns are
    restarted. `cpus`: logical CPUs per node (the recipe's `resources.cpus`, per node as
    on a cloud; default: this machine's cores, or $RAYCTL_LOCAL_CPUS, split over the
    nodes, at least 1 each). A running head is reused as it is; if it has fewer CPUs than
    asked, a warning says how to resize (`rayctl down`, then launch again). Returns once
    the head reports every node alive (or a RayctlError that stops what this call started).
    """
    cdir = cluster_dir(home)
    nodes = max(1, int(nodes or 1))
    per_node = [int(cpus)] * nodes if cpus else nodes_mod.shares(default_cpus(), nodes)
    want = per_node[0]
    with locked(cdir, status=status):
        state = read_state(home)
        if state is not None and healthy(state):
            state.reused = True
            if not state.auth_token_path:
                state.warnings.append(
                    "the running local cluster was started by an older rayctl without Ray token auth, so local "
                    "users can read its dashboard; run `rayctl down` and launch again to restart it with auth")
            if cpus and state.num_cpus < want:
                state.warnings.append(
                    f"the running local cluster has {state.num_cpus} CPU(s) and the recipe asks for {want}; "
                    "run `rayctl down` and launch again to restart it with more")
            if state.workers:
                nodes_mod.restart_dead(state, cdir, status)
            if state.nodes < nodes:
                if status:
                    status(f"the running local cluster has {state.nodes} node(s); adding {nodes - state.nodes}")
                nodes_mod.add_workers(state, cdir, nodes, per_node, status)
            return state
        if state is not None:
            # Dead or half-dead head from an earlier session: clear what is left of it.
            kill_token(state.token, state.pid)
            (cdir / "state.json").unlink(missing_ok=True)
        if status:
            layout = f", {nodes} nodes" if nodes > 1 else ""
            per = " per node" if nodes > 1 else ""
            status(f"starting the local Ray cluster ({want} CPU{'s' if want != 1 else ''}{per}{layout}, {NODE_IP}); "
                   "this takes 10-20 s the first time")
        gpus = nodes_mod.machine_gpus() if nodes > 1 else []
        c = _start(cdir, want, status, nodes_mod.gpu_shares(gpus, nodes)[0] if gpus else None)
        if nodes > 1:
            try:
                nodes_mod.add_workers(c, cdir, nodes, per_node, status)
            except BaseException:
                kill_token(c.token, c.pid)  # the head too: nothing half-built stays
                (cdir / "state.json").unlink(missing_ok=True)
                raise
        cores = machine_cores()
        if sum(per_node) > cores:
            c.warnings.append(f"the local cluster has {sum(per_node)} logical CPUs on a machine with {cores} cores "
                              "(oversubscribed, as the recipe's resources.cpus asks)")
        return c
