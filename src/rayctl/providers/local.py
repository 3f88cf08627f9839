"""The local target: a Ray head that rayctl starts, owns and reuses on this machine.

- It listens on 127.0.0.2 (Ray rewrites 127.0.0.1 to the eth0 address; 127.0.0.2 keeps
  everything on loopback) with its own free ports, so it never clashes with a user's
  own Ray or with another rayctl home.
- Its temp dir lives under `$RAYCTL_HOME/clusters/local/ray` (or `/tmp/rayctl-<hash>`
  when that path is too long for Ray's unix sockets), and `state.json` beside it
  records the address, ports, session and the ownership token.
  `$RAYCTL_LOCAL_CLUSTER_DIR` moves that folder (several homes, or a test session,
  can share one head).
- Every process of the cluster carries `RAYCTL_LOCAL_CLUSTER=<token>` in its
  environment (the head's daemons, Ray workers, job drivers and their children
  inherit it). `stop_cluster()` stops exactly those processes: never `ray stop`,
  which would kill every Ray on the machine.
- Ray's token authentication is on (`RAY_AUTH_MODE=token`): the token is a random
  secret in `auth_token` beside `state.json` (mode 0600, created once, never printed),
  and Ray's processes read it from `RAY_AUTH_TOKEN_PATH`. rayctl's own clients send it
  as an `Authorization: Bearer` header (`auth_headers()`); without it the dashboard and
  the Jobs API answer 401/403 to anyone else on this machine. A node joining this
  cluster (`ray start --address=GCS`) needs `RAY_AUTH_MODE=token` and
  `RAY_AUTH_TOKEN_PATH` pointing at the same file.
- A file lock serialises start/stop, so two concurrent launches start one head.

Start takes 10-17 s on a small machine, so the head stays up between launches;
`rayctl down` stops it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from ..settings import rayctl_home
from ..errors import InputError, RayctlError

NAME = "local"
NODE_IP = "127.0.0.2"
AUTH_MODE = "token"
AUTH_TOKEN_FILE = "auth_token"
TOKEN_ENV = "RAYCTL_LOCAL_CLUSTER"
START_TIMEOUT_S = float(os.environ.get("RAYCTL_START_TIMEOUT", 180))
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 8.0
LOCK_TIMEOUT_S = 300.0
# Ray puts unix sockets at <temp>/session_<date>_<usec>_<pid>/sockets/dash_<Module>Head; sun_path
# holds 107 bytes and the part after <temp> takes up to ~72.
MAX_TEMP_DIR_LEN = 32
WORKER_PORTS = 200
_PORT_NAMES = ("port", "dashboard-port", "ray-client-server-port", "node-manager-port", "object-manager-port",
               "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
               "metrics-export-port")

Status = Callable[[str], None]


@dataclasses.dataclass
class LocalCluster:
    """A running rayctl-owned local Ray head."""

    address: str  # Jobs API / dashboard: http://127.0.0.2:PORT
    gcs_address: str  # 127.0.0.2:PORT, for `ray.init(address=...)` and extra nodes
    node_ip: str
    ports: dict
    serve_host: str
    serve_port: int
    temp_dir: str
    session_name: str
    pid: int  # `ray start`'s pid: the session id of the head's daemons
    token: str
    num_cpus: int
    started_at: str
    ray_version: str
    auth_token_path: str = ""  # the 0600 file holding the cluster's Ray auth token ("" = auth off: an old head)
    name: str = NAME
    reused: bool = dataclasses.field(default=False, compare=False)
    warnings: list = dataclasses.field(default_factory=list, compare=False)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("reused")
        d.pop("warnings")
        return d

    @property
    def env(self) -> dict:
        """Environment for jobs on this cluster (the Serve port allocated for it)."""
        return {"RAYCTL_SERVE_HOST": self.serve_host, "RAYCTL_SERVE_PORT": str(self.serve_port)}


# ---------------------------------------------------------------------------- paths and state


def cluster_dir(home: Path | None = None) -> Path:
    """`$RAYCTL_HOME/clusters/local`, or `$RAYCTL_LOCAL_CLUSTER_DIR` to share one head between homes."""
    if home is None and os.environ.get("RAYCTL_LOCAL_CLUSTER_DIR"):
        return Path(os.environ["RAYCTL_LOCAL_CLUSTER_DIR"]).expanduser()
    return Path(home or rayctl_home()) / "clusters" / NAME


def _temp_dir(cdir: Path) -> Path:
    own = cdir / "ray"
    if len(str(own)) <= MAX_TEMP_DIR_LEN:
        return own
    digest = hashlib.sha256(str(cdir.resolve()).encode()).hexdigest()[:10]
    base = tempfile.gettempdir()
    if len(base) > 20:
        base = "/tmp"
    return Path(base) / f"rayctl-{digest}"


def read_state(home: Path | None = None) -> LocalCluster | None:
    path = cluster_dir(home) / "state.json"
    try:
        doc = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(LocalCluster)}
        return LocalCluster(**{k: v for k, v in doc.items() if k in fields})
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # a torn or foreign file: treated as no cluster (its processes are found by token)


def _write_state(cdir: Path, c: LocalCluster) -> None:
    tmp = cdir / f".state.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(c.as_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, cdir / "state.json")


@contextlib.contextmanager
def _locked(cdir: Path, timeout: float = LOCK_TIMEOUT_S, status: Status | None = None):
    import fcntl

    cdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cdir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RayctlError(
                        f"another rayctl has held the local cluster lock ({cdir / 'lock'}) for over "
                        f"{timeout:.0f} s while starting or stopping the cluster; try again when it is done")
                if status and not told:
                    status("waiting for another rayctl to finish starting/stopping the local cluster")
                    told = True
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------------------- the auth token


def ensure_auth_token(cdir: Path) -> Path:
    """The cluster's Ray auth token file (0600), created with a fresh random token if missing."""
    path = cdir / AUTH_TOKEN_FILE
    cdir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if (path.stat().st_mode & 0o777) != 0o600:
            os.chmod(path, 0o600)
        if path.read_text().strip():
            return path
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


def read_auth_token(c: LocalCluster) -> str | None:
    if not c.auth_token_path:
        return None
    try:
        return Path(c.auth_token_path).read_text().strip() or None
    except OSError:
        return None


def auth_headers(c: LocalCluster) -> dict:
    """HTTP headers for the cluster's dashboard / Jobs API (the bearer token; empty when auth is off)."""
    token = read_auth_token(c)
    return {"Authorization": f"Bearer {token}"} if token else {}


def ray_env(c: LocalCluster) -> dict:
    """Environment for a Ray process (driver, `ray` CLI, joining node) that talks to this cluster."""
    if not c.auth_token_path:
        return {"RAY_AUTH_MODE": "disabled"}
    return {"RAY_AUTH_MODE": AUTH_MODE, "RAY_AUTH_TOKEN_PATH": c.auth_token_path}


# ---------------------------------------------------------------------------- health


def _get_json(url: str, timeout: float = 2.0, headers: dict | None = None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
        return json.loads(r.read().decode() or "null")


def healthy(c: LocalCluster, timeout: float = 2.0) -> bool:
    """The head answers on its dashboard and it is the same Ray session we started."""
    try:
        v = _get_json(f"{c.address}/api/version", timeout, auth_headers(c))
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(v, dict) and v.get("session_name") == c.session_name


def _jobs_api_ready(address: str, headers: dict) -> bool:
    try:
        _get_json(f"{address}/api/jobs/", 3.0, headers)
        return True
    except (OSError, ValueError, urllib.error.URLError):
        return False


# ---------------------------------------------------------------------------- start


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))  # free on every address, not just loopback
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


def _worker_port_range() -> tuple[int, int]:
    """A free block below the kernel's ephemeral range and away from Ray's default 10002-19999."""
    rng = random.Random()
    for _ in range(30):
        lo = 20000 + rng.randrange(0, (32000 - 20000) // WORKER_PORTS) * WORKER_PORTS
        if all(_port_free(p) for p in range(lo, lo + WORKER_PORTS)):
            return lo, lo + WORKER_PORTS - 1
    raise RayctlError("could not find 200 free TCP ports for the local Ray cluster's workers (20000-32000)")


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
    from ..ledger import now

    return now()


def _start(cdir: Path, num_cpus: int, status: Status | None) -> LocalCluster:
    _ray_module_available()
    temp = _temp_dir(cdir)
    temp.mkdir(parents=True, exist_ok=True)
    log_path = cdir / "head.log"
    token_path = ensure_auth_token(cdir)
    last_err = ""
    for attempt in range(3):
        token = secrets.token_hex(12)
        ports = dict(zip(_PORT_NAMES, _free_ports(len(_PORT_NAMES) + 1)))
        serve_port = _free_ports(1)[0]
        while serve_port in ports.values():
            serve_port = _free_ports(1)[0]
        wmin, wmax = _worker_port_range()
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head",
               f"--node-ip-address={NODE_IP}", f"--dashboard-host={NODE_IP}", "--include-dashboard=true",
               f"--temp-dir={temp}", f"--num-cpus={num_cpus}", "--disable-usage-stats",
               f"--min-worker-port={wmin}", f"--max-worker-port={wmax}"]
        cmd += [f"--{k}={v}" for k, v in ports.items()]
        env = dict(os.environ)
        for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN"):  # the user's token is not ours
            env.pop(k, None)
        env.update({"RAY_AUTH_MODE": AUTH_MODE, "RAY_AUTH_TOKEN_PATH": str(token_path), TOKEN_ENV: token,
                    "RAY_USAGE_STATS_ENABLED": "0"})
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
            try:
                rc = proc.wait(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise RayctlError(f"the local Ray head did not start within {START_TIMEOUT_S:.0f} s; "
                                  f"see {log_path}") from None
            if rc != 0:
                tail = _tail(log_path)
                last_err = tail
                _kill_token(token, proc.pid)
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
                    v = _get_json(f"{c.address}/api/version", 2.0, headers)
                    if isinstance(v, dict) and v.get("session_name") and _jobs_api_ready(c.address, headers):
                        c.session_name, c.ray_version = v["session_name"], v.get("ray_version", "")
                        break
                except (OSError, ValueError, urllib.error.URLError):
                    pass
                if time.monotonic() > deadline:
                    raise RayctlError(f"the local Ray head started but its dashboard/Jobs API at {c.address} "
                                      f"did not answer within {READY_TIMEOUT_S:.0f} s; see {log_path}")
                time.sleep(0.25)
            _write_state(cdir, c)
            return c
        except BaseException:
            # Half-started (error or Ctrl-C): stop what this call started, leave nothing behind.
            if proc.poll() is None:
                proc.kill()
            _kill_token(token, proc.pid)
            raise
    raise RayctlError(f"`ray start --head` failed three times; last lines of {log_path}:\n{last_err}")


def _tail(path: Path, n: int = 6) -> str:
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


def ensure_cluster(*, cpus: int | None = None, home: Path | None = None,
                   status: Status | None = None) -> LocalCluster:
    """The running local cluster (reused when healthy), started if there is none.

    `cpus`: logical CPUs for a new head (default: this machine's cores, or
    $RAYCTL_LOCAL_CPUS). A running head is reused as it is; if it has fewer CPUs than
    asked, a warning says how to resize (`rayctl down`, then launch again).
    """
    cdir = cluster_dir(home)
    want = int(cpus) if cpus else default_cpus()
    with _locked(cdir, status=status):
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
            return state
        if state is not None:
            # Dead or half-dead head from an earlier session: clear what is left of it.
            _kill_token(state.token, state.pid)
            (cdir / "state.json").unlink(missing_ok=True)
        if status:
            status(f"starting the local Ray cluster ({want} CPU{'s' if want != 1 else ''}, {NODE_IP}); "
                   "this takes 10-20 s the first time")
        c = _start(cdir, want, status)
        cores = machine_cores()
        if want > cores:
            c.warnings.append(f"the local cluster has {want} logical CPUs on a machine with {cores} cores "
                              "(oversubscribed, as the recipe's resources.cpus asks)")
        return c


# ---------------------------------------------------------------------------- stop


def _own_processes(token: str, sid: int | None = None) -> list:
    """The cluster's processes (psutil.Process), never this process or its parents.

    Three ways in, checked against each other: the head's session (`ray start` runs in
    a new session, so its daemons and the workers the raylet forks share the session
    id `sid`), the token in the environment (job drivers run in sessions of their own;
    processes that rename themselves, like Ray workers, may blank their environment),
    and the descendants of both. The session counts only when one of its processes
    carries the token, so a recycled session id never matches someone else's processes.
    """
    import psutil

    skip = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        skip.update(p.pid for p in psutil.Process().parents())
    me = os.getuid() if hasattr(os, "getuid") else None
    by_token, by_session = {}, {}
    for p in psutil.process_iter(["pid", "uids"]):
        if p.pid in skip:
            continue
        try:
            if me is not None and p.info["uids"] and p.info["uids"].real != me:
                continue
            if sid and sid > 1 and os.getsid(p.pid) == sid:
                by_session[p.pid] = p
            if p.environ().get(TOKEN_ENV) == token:
                by_token[p.pid] = p
        except (psutil.Error, OSError):
            continue
    found = dict(by_token)
    if set(by_session) & set(by_token):
        found.update(by_session)
    for p in list(found.values()):
        with contextlib.suppress(psutil.Error):
            for c in p.children(recursive=True):
                if c.pid not in skip:
                    found.setdefault(c.pid, c)
    return list(found.values())


def _alive(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_token(token: str, sid: int | None = None, grace: float = STOP_GRACE_S) -> int:
    """SIGTERM every process of the cluster, SIGKILL what is left after `grace` s; returns how many."""
    import psutil

    if not token:
        return 0
    procs = _own_processes(token, sid)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in procs):
        time.sleep(0.1)
    for p in procs:
        if _alive(p):
            with contextlib.suppress(psutil.Error):
                p.kill()
    # Anything forked while we were stopping (a worker the raylet just spawned).
    late = [p for p in _own_processes(token, sid) if _alive(p)]
    for p in late:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return len(procs) + len(late)


def processes(home: Path | None = None) -> list:
    """Live processes of the local cluster (psutil.Process), for diagnostics and tests."""
    state = read_state(home)
    if state is None:
        return []
    return [p for p in _own_processes(state.token, state.pid) if _alive(p)]


def stop_cluster(home: Path | None = None, status: Status | None = None) -> dict | None:
    """Stop the local cluster's own processes and clean up; None when there was none."""
    cdir = cluster_dir(home)
    if not cdir.exists():
        return None
    with _locked(cdir, status=status):
        state = read_state(home)
        if state is None:
            return None
        if status:
            status(f"stopping the local Ray cluster at {state.address}")
        n = _kill_token(state.token, state.pid)
        (cdir / "state.json").unlink(missing_ok=True)
        temp = Path(state.temp_dir)
        if temp in (cdir / "ray", _temp_dir(cdir)) or temp.name.startswith("rayctl-"):  # only a dir rayctl made
            import shutil

            shutil.rmtree(temp, ignore_errors=True)
        return {"name": NAME, "address": state.address, "processes": n, "session": state.session_name}
