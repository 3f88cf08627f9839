"""Worker nodes of a multi-node local cluster: raylets joined to the head on 127.0.0.3, .4, ...

`nodes: N` on the local target starts the head (127.0.0.2) and N-1 worker raylets, each
`ray start --address=<head GCS> --node-ip-address=127.0.0.<2+i>` with its share of the
CPUs (and of the GPUs, where the machine has them: `CUDA_VISIBLE_DEVICES` splits them),
its own temp dir beside the head's (`<head temp>-<octet>`), the cluster's auth
token and its ownership token (`RAYCTL_LOCAL_CLUSTER`), so `stop_cluster` stops them and
only them. `state.json` records each worker (`ip`, `pid`: its `ray start` session,
`raylet_pid`, `cpus`, `gpus`, `temp_dir`). A worker node whose raylet died is restarted by
`restart_dead_workers` (launch uses it before and during a run: a lost node comes back).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

from ...errors import RayctlError
from .auth import auth_headers, ray_env
from .health import alive_node_rows, get_json, resource_usage
from .ports import free_ports, worker_port_range
from .state import (MAX_TEMP_DIR_LEN, NODE_IP, TOKEN_ENV, LocalCluster, Status, cluster_dir, locked, read_state,
                    write_state)

NODES_TIMEOUT_S = float(os.environ.get("RAYCTL_NODES_TIMEOUT", 240))
# A raylet waits a short while for its dashboard agent; on a busy machine that is too short, and
# the raylet dies (then `ray start` waits minutes for it): give the agent longer.
AGENT_WAIT_ENV, AGENT_WAIT_MS = "RAY_agent_register_timeout_ms", "120000"
_PORT_NAMES = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
               "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")


def worker_ip(index: int) -> str:
    """The node IP of worker `index` (0-based): 127.0.0.3, 127.0.0.4, ..."""
    base = NODE_IP.rsplit(".", 1)
    return f"{base[0]}.{int(base[1]) + 1 + index}"


def shares(total: int, nodes: int) -> list[int]:
    """`total` CPUs split over `nodes` (the first nodes get the remainder), at least 1 each."""
    each, extra = divmod(max(int(total), nodes), nodes)
    return [each + (1 if i < extra else 0) for i in range(nodes)]


def gpu_shares(gpus: list[str], nodes: int) -> list[list[str]]:
    """The machine's GPU ids split over the nodes (the head first gets the remainder)."""
    if not gpus:
        return [[] for _ in range(nodes)]
    each, extra = divmod(len(gpus), nodes)
    out, i = [], 0
    for n in range(nodes):
        k = each + (1 if n < extra else 0)
        out.append(gpus[i:i + k])
        i += k
    return out


def machine_gpus() -> list[str]:
    """This machine's GPU ids (CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`)."""
    vis = os.environ.get("CUDA_VISIBLE_DEVICES")
    if vis is not None:
        return [g for g in vis.split(",") if g.strip()]
    return nvidia_smi_gpus()


def nvidia_smi_gpus() -> list[str]:
    """The indexes of the GPUs `nvidia-smi -L` lists ([] without the tool or when it fails)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, ln in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


def node_env(c: LocalCluster, gpus: list[str] | None) -> dict:
    """The environment of a node's `ray start`: the cluster's auth and ownership tokens, its GPUs."""
    env = dict(os.environ)
    for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(k, None)
    env.update(ray_env(c))
    env.update({TOKEN_ENV: c.token, "RAY_USAGE_STATS_ENABLED": "0"})
    env.setdefault(AGENT_WAIT_ENV, AGENT_WAIT_MS)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    bindir = os.path.dirname(sys.executable)
    if env.get("PATH", "").split(os.pathsep)[0] != bindir:
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


def worker_temp_dir(c: LocalCluster, ip: str) -> Path:
    """A worker node's own Ray temp dir: the head's plus `-<last octet>` (or `/tmp/rayctl-<hash>-<octet>`
    when that is too long for Ray's unix sockets).

    Not the head's: every node's log monitor publishes the logs under its temp dir, so
    nodes sharing one would echo each other's worker logs (and a restarted node all the
    old ones) into the job's output twice.
    """
    octet = ip.rsplit(".", 1)[1]
    own = f"{c.temp_dir.rstrip('/')}-{octet}"
    if len(own) <= MAX_TEMP_DIR_LEN:
        return Path(own)
    digest = hashlib.sha256(c.temp_dir.encode()).hexdigest()[:10]
    return Path(f"/tmp/rayctl-{digest}-{octet}")


def _raylet_pid(sid: int) -> int | None:
    import psutil

    for p in psutil.process_iter(["pid", "name"]):
        with contextlib.suppress(psutil.Error, OSError):
            if p.info["name"] == "raylet" and os.getsid(p.pid) == sid:
                return p.pid
    return None


def start_worker(c: LocalCluster, cdir: Path, ip: str, cpus: int, gpus: list[str] | None,
                 timeout: float = NODES_TIMEOUT_S) -> dict:
    """Start one worker raylet at `ip` joined to the head; its record for state.json."""
    log_path = cdir / f"worker-{ip}.log"
    temp = worker_temp_dir(c, ip)
    shutil.rmtree(temp, ignore_errors=True)  # a restarted node must not re-read the lost one's logs
    for attempt in range(3):
        ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES))))
        wmin, wmax = worker_port_range()
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", f"--address={c.gcs_address}",
               f"--node-ip-address={ip}", f"--temp-dir={temp}", f"--num-cpus={cpus}",
               "--disable-usage-stats", f"--min-worker-port={wmin}", f"--max-worker-port={wmax}"]
        if gpus is not None:
            cmd.append(f"--num-gpus={len(gpus)}")
        cmd += [f"--{k}={v}" for k, v in ports.items()]
        with open(log_path, "ab") as log:
            log.write(f"\n--- rayctl: {' '.join(cmd)}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, env=node_env(c, gpus), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, cwd=str(cdir))
        try:
            rc = wait_for_start(proc, timeout)
        except BaseException:
            proc.kill()
            _kill_session(c, proc.pid)
            raise
        if rc == 0:
            return {"ip": ip, "pid": proc.pid, "raylet_pid": _raylet_pid(proc.pid), "cpus": cpus,
                    "gpus": len(gpus or []), "temp_dir": str(temp)}
        proc.kill()
        _kill_session(c, proc.pid)
        if rc is None:
            why = f"did not start within {timeout:.0f} s"
        elif rc == RAYLET_DIED:
            why = "lost its raylet while starting (a busy machine: the raylet gives its agents 15 s)"
        else:
            why = f"failed (exit {rc})"
        tail = log_path.read_text(errors="replace")[-2000:].lower()
        if attempt == 2 or not (rc == RAYLET_DIED or any(w in tail for w in ("in use", "bind", "timed out"))):
            raise RayctlError(f"the local worker node {ip} {why}; see {log_path}")
        shutil.rmtree(temp, ignore_errors=True)
    raise AssertionError("unreachable")


RAYLET_DIED = -1000


def wait_for_start(proc: subprocess.Popen, timeout: float) -> int | None:
    """`ray start`'s exit code; None after `timeout` s; RAYLET_DIED when the raylet it started died
    meanwhile (`ray start` would then wait for it for minutes)."""
    import psutil

    deadline = time.monotonic() + timeout
    raylet = None
    while time.monotonic() < deadline:
        try:
            return proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        try:
            if raylet is None:
                pid = _raylet_pid(proc.pid)
                raylet = psutil.Process(pid) if pid else None
            elif not raylet.is_running() or raylet.status() == psutil.STATUS_ZOMBIE:
                return RAYLET_DIED
        except psutil.Error:
            return RAYLET_DIED
    return None


def _kill_session(c: LocalCluster, sid: int) -> None:
    """Kill what is left of one node (its `ray start` session), only processes of this cluster."""
    import psutil

    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(p.pid) == sid and p.environ().get(TOKEN_ENV) == c.token:
                p.kill()


def alive_nodes(c: LocalCluster, timeout: float = 3.0) -> list[dict] | None:
    """The cluster's ALIVE nodes as the head's GCS sees them ([{node_id, node_ip, ...}]); None if unknown."""
    try:
        doc = get_json(f"{c.address}/api/v0/nodes?limit=1000&detail=false", timeout, auth_headers(c))
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return alive_node_rows(doc) or []


def wait_for_nodes(c: LocalCluster, n: int, timeout: float, started_ips: list[str] | None = None) -> None:
    """Until the head reports `n` alive nodes (and every IP of `started_ips` among them)."""
    deadline = time.monotonic() + timeout
    want_ips = set(started_ips or ())
    seen: list = []
    while True:
        nodes = alive_nodes(c)
        if nodes is not None:
            seen = nodes
            if len(nodes) >= n and want_ips <= {r.get("node_ip") for r in nodes}:
                _wait_for_cpus(c, deadline)
                return
        if time.monotonic() > deadline:
            ips = sorted(r.get("node_ip", "?") for r in seen)
            raise RayctlError(f"the local Ray cluster reports {len(seen)} alive node(s) ({', '.join(ips) or 'none'}) "
                              f"{timeout:.0f} s after starting {n}; see head.log and the worker-*.log files in the "
                              "local cluster's folder")
        time.sleep(0.5)


def _cluster_cpus(c: LocalCluster) -> float | None:
    """Total CPUs in the head's autoscaler status (what admission and `check_resources` read)."""
    try:
        usage = resource_usage(get_json(f"{c.address}/api/cluster_status?format=0", 3.0, auth_headers(c)))
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return usage["CPU"][1] if usage and "CPU" in usage else None


def _wait_for_cpus(c: LocalCluster, deadline: float) -> None:
    """Until the autoscaler status counts every node's CPUs: it lags the node list by a few
    seconds, and a launch admitted in that gap would be refused as too small."""
    want = c.num_cpus + sum(int(w.get("cpus") or 0) for w in c.workers)
    while time.monotonic() < deadline:
        have = _cluster_cpus(c)
        if have is not None and have >= want:
            return
        time.sleep(0.5)


def add_workers(c: LocalCluster, cdir: Path, nodes: int, cpus_each: list[int],
                status: Status | None = None) -> list[dict]:
    """Start the workers `c` lacks to have `nodes` nodes; records them in state.json as they start.

    On any error (or Ctrl-C) the workers this call started are stopped before it propagates.
    """
    gpus = machine_gpus()
    gshare = gpu_shares(gpus, nodes) if gpus else None
    have = 1 + len(c.workers)
    new: list[dict] = []
    try:
        for i in range(have, nodes):
            ip = worker_ip(i - 1)
            if status:
                status(f"starting local worker node {ip} ({cpus_each[i]} CPU{'s' if cpus_each[i] != 1 else ''})")
            w = start_worker(c, cdir, ip, cpus_each[i], gshare[i] if gshare else None)
            new.append(w)
            c.workers.append(w)
            write_state(cdir, c)
        wait_for_nodes(c, nodes, NODES_TIMEOUT_S, [w["ip"] for w in new])
    except BaseException:
        for w in new:
            _kill_session(c, w["pid"])
            c.workers.remove(w)
        write_state(cdir, c)
        raise
    return new


def worker_dead(c: LocalCluster, w: dict, alive_ips: set | None) -> bool:
    """The worker's raylet process is gone, or the head no longer has a live node at its IP."""
    import psutil

    pid = w.get("raylet_pid")
    if pid:
        try:
            p = psutil.Process(pid)
            if not p.is_running() or p.status() == psutil.STATUS_ZOMBIE or p.environ().get(TOKEN_ENV) != c.token:
                return True
        except (psutil.Error, OSError):
            return True
    return alive_ips is not None and w["ip"] not in alive_ips


def restart_dead_workers(home: Path | None = None, status: Status | None = None) -> list[dict]:
    """Restart the local cluster's worker nodes whose raylet died; the restarted workers' records.

    Does nothing (returns []) when there is no cluster, its head does not answer, or
    another rayctl holds the cluster lock (it is starting or stopping the cluster).
    """
    cdir = cluster_dir(home)
    state = read_state(home)
    if state is None or not state.workers:
        return []
    try:
        with locked(cdir, timeout=5.0):
            state = read_state(home)
            if state is None or not state.workers:
                return []
            return restart_dead(state, cdir, status)
    except RayctlError as e:
        if "lock" in str(e):
            return []
        raise


def restart_dead(state: LocalCluster, cdir: Path, status: Status | None = None) -> list[dict]:
    """`restart_dead_workers` for a caller that holds the cluster lock."""
    alive = alive_nodes(state)
    if alive is None:
        return []  # the head does not answer: not a worker's problem
    ips = {r.get("node_ip") for r in alive}
    dead = [w for w in state.workers if worker_dead(state, w, ips)]
    restarted = []
    gpus = machine_gpus()
    for w in dead:
        if status:
            status(f"local worker node {w['ip']} is down; restarting it")
        _kill_session(state, w["pid"])
        idx = state.workers.index(w)
        gsh = gpu_shares(gpus, 1 + len(state.workers))[idx + 1] if gpus else None
        new = start_worker(state, cdir, w["ip"], int(w["cpus"]), gsh)
        state.workers[idx] = new
        write_state(cdir, state)
        restarted.append(new)
    if restarted:
        wait_for_nodes(state, 1 + len(state.workers), NODES_TIMEOUT_S, [w["ip"] for w in restarted])
    return restarted


class NodeWatch:
    """A daemon thread that restarts dead worker nodes every `interval` s while a run is followed.

    `on_restart(worker)` is called (in the thread) for each node it brought back.
    """

    def __init__(self, on_restart, interval: float = 3.0, home: Path | None = None,
                 status: Status | None = None):
        self.on_restart, self.interval, self.home, self.status = on_restart, interval, home, status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rayctl-node-watch", daemon=True)
        self.errors: list[str] = []

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                for w in restart_dead_workers(self.home, self.status):
                    self.on_restart(w)
            except Exception as e:  # noqa: BLE001 - a watcher never kills the run it watches
                self.errors.append(str(e))
                if self.status:
                    self.status(f"could not restart a local worker node: {e}")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=1.0)
        return False
