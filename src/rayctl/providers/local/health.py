"""Is the local head up: its dashboard answers, with the session rayctl started, and the Jobs API is ready."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from .auth import auth_headers
from .state import LocalCluster


def get_json(url: str, timeout: float = 2.0, headers: dict | None = None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
        return json.loads(r.read().decode() or "null")


def resource_usage(doc) -> dict | None:
    """Parse the dashboard's autoscaler status (`/api/cluster_status?format=0`): {"CPU": (used, total),
    "GPU": (used, total), ..., "_demand": [...]}, or None while the head has not reported yet.

    The one reader of that document: the local cluster waits on it for its nodes' CPUs, and
    runs/capacity reads it to admit a launch and to explain a pending one."""
    report = ((doc or {}).get("data") or {}).get("clusterStatus") if isinstance(doc, dict) else None
    load = report.get("loadMetricsReport") if isinstance(report, dict) else None
    if not isinstance(load, dict) or not load.get("usage"):
        return None
    out: dict = {k: (float(v[0]), float(v[1])) for k, v in load["usage"].items()
                 if isinstance(v, list) and len(v) == 2}
    out["_demand"] = list(load.get("resourceDemand") or []) + list(load.get("pgDemand") or [])
    return out


def alive_node_rows(doc) -> list[dict] | None:
    """The ALIVE nodes in an answer of Ray's state API (`/api/v0/nodes`, what `ray list nodes`
    reads): its rows as Ray gives them ({node_id, node_ip, is_head_node, resources_total, ...}),
    or None when the answer does not have that shape.

    The one reader of that document: the local cluster's node list and runs/capacity's check of
    an existing cluster's nodes."""
    try:
        rows = doc["data"]["result"]["result"]
    except (KeyError, TypeError):
        return None
    if not isinstance(rows, list):
        return None
    return [r for r in rows if isinstance(r, dict) and str(r.get("state", "")).upper() == "ALIVE"]


def healthy(c: LocalCluster, timeout: float = 2.0) -> bool:
    """The head answers on its dashboard and it is the same Ray session we started."""
    try:
        v = get_json(f"{c.address}/api/version", timeout, auth_headers(c))
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(v, dict) and v.get("session_name") == c.session_name


def jobs_api_ready(address: str, headers: dict) -> bool:
    try:
        get_json(f"{address}/api/jobs/", 3.0, headers)
        return True
    except (OSError, ValueError, urllib.error.URLError):
        return False
