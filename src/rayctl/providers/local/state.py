"""The local cluster's record on disk: where its folder is, `state.json`, and the lock.

`$RAYCTL_HOME/clusters/local` (or `$RAYCTL_LOCAL_CLUSTER_DIR`) holds `state.json` (the
address, ports, session and the ownership token), the auth token, `head.log`, and
`lock`, the file lock that serialises start and stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from ...errors import RayctlError
from ...settings import rayctl_home

NAME = "local"
NODE_IP = "127.0.0.2"
TOKEN_ENV = "RAYCTL_LOCAL_CLUSTER"
LOCK_TIMEOUT_S = 300.0
# Ray puts unix sockets at <temp>/session_<date>_<usec>_<pid>/sockets/dash_<Module>Head; sun_path
# holds 107 bytes and the part after <temp> takes up to ~72.
MAX_TEMP_DIR_LEN = 32

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
    workers: list = dataclasses.field(default_factory=list)  # worker nodes: {ip, pid, raylet_pid, cpus, gpus}
    name: str = NAME
    reused: bool = dataclasses.field(default=False, compare=False)
    warnings: list = dataclasses.field(default_factory=list, compare=False)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("reused")
        d.pop("warnings")
        return d

    @property
    def nodes(self) -> int:
        return 1 + len(self.workers)

    @property
    def total_cpus(self) -> int:
        return self.num_cpus + sum(int(w.get("cpus") or 0) for w in self.workers)

    @property
    def env(self) -> dict:
        """Environment for jobs on this cluster (the Serve port allocated for it)."""
        return {"RAYCTL_SERVE_HOST": self.serve_host, "RAYCTL_SERVE_PORT": str(self.serve_port)}


def cluster_dir(home: Path | None = None) -> Path:
    """`$RAYCTL_HOME/clusters/local`, or `$RAYCTL_LOCAL_CLUSTER_DIR` to share one head between homes."""
    if home is None and os.environ.get("RAYCTL_LOCAL_CLUSTER_DIR"):
        return Path(os.environ["RAYCTL_LOCAL_CLUSTER_DIR"]).expanduser()
    return Path(home or rayctl_home()) / "clusters" / NAME


def temp_dir_for(cdir: Path) -> Path:
    """Ray's temp dir for the cluster in `cdir`: `cdir/ray`, or `/tmp/rayctl-<hash>` when that path is too long."""
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


def write_state(cdir: Path, c: LocalCluster) -> None:
    tmp = cdir / f".state.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(c.as_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, cdir / "state.json")


@contextlib.contextmanager
def locked(cdir: Path, timeout: float = LOCK_TIMEOUT_S, status: Status | None = None):
    """Hold the cluster's start/stop lock (a RayctlError after `timeout` s of waiting for another rayctl)."""
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
