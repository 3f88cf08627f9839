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
- `nodes: N` adds N-1 worker raylets on 127.0.0.3, .4, ... joined to the head, each with
  its share of the CPUs (and GPUs), the head's temp dir and both tokens (`nodes`).
- A file lock serialises start/stop, so two concurrent launches start one head.

Start takes 10-17 s on a small machine, so the head stays up between launches;
`rayctl down` stops it.

The modules: `state` (the folder, `state.json`, the lock), `auth` (the token), `health`
(is it up), `ports` (free ports for a new head), `start` (start or reuse: `ensure_cluster`),
`nodes` (the worker raylets of a multi-node cluster: `nodes: N`, restart of a dead one),
`stop` (its own processes: `stop_cluster`). Callers use this package's names
(`from rayctl.providers import local`, then `local.ensure_cluster(...)`).
"""

from .auth import AUTH_MODE, AUTH_TOKEN_FILE, auth_headers, ensure_auth_token, ray_env, read_auth_token
from .health import healthy
from .nodes import NodeWatch, alive_nodes, nvidia_smi_gpus, restart_dead_workers, worker_ip
from .start import START_TIMEOUT_S, default_cpus, ensure_cluster, machine_cores
from .state import NAME, NODE_IP, TOKEN_ENV, LocalCluster, Status, cluster_dir, read_state
from .stop import processes, stop_cluster

__all__ = ["AUTH_MODE", "AUTH_TOKEN_FILE", "NAME", "NODE_IP", "START_TIMEOUT_S", "TOKEN_ENV", "LocalCluster", "NodeWatch",
           "Status", "alive_nodes", "auth_headers", "cluster_dir", "default_cpus", "ensure_auth_token",
           "ensure_cluster", "healthy", "machine_cores", "nvidia_smi_gpus", "processes", "ray_env", "read_auth_token", "read_state",
           "restart_dead_workers", "stop_cluster", "worker_ip"]
