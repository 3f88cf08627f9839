"""What a Ray cluster can run: its CPUs/GPUs in use and in all, and the checks before a job is submitted.

A job that can never fit is refused (InputError, exit 2); one that fits but finds the
resources held by other work is refused after a short settle (ResourcesBusy, exit 1),
instead of a job that waits forever.
"""

from __future__ import annotations

import time
import urllib.error

from ..errors import InputError, RayctlError
from ..redact import redact_url
from .cluster_api import _get


def cluster_resources(address: str, timeout: float = 5.0) -> dict | None:
    """{"CPU": (used, total), "GPU": (used, total), ..., "_demand": [...]}; None if unknown.

    From the dashboard's autoscaler status (updated every few seconds by the head).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            doc = _get(address, "/api/cluster_status?format=0", 3.0)
            report = ((doc or {}).get("data") or {}).get("clusterStatus") or {}
            load = report.get("loadMetricsReport") if isinstance(report, dict) else None
            if load and load.get("usage"):
                out = {k: (float(v[0]), float(v[1])) for k, v in load["usage"].items()
                       if isinstance(v, list) and len(v) == 2}
                out["_demand"] = list(load.get("resourceDemand") or []) + list(load.get("pgDemand") or [])
                return out
        except (urllib.error.URLError, OSError, ValueError, AttributeError, TypeError):
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def describe_resources(res: dict | None) -> str:
    if not res:
        return "unknown"
    parts = []
    for k in ("CPU", "GPU"):
        if k in res:
            used, total = res[k]
            parts.append(f"{fmt_amount(used)}/{fmt_amount(total)} {k} in use")
    return ", ".join(parts) or "no CPU/GPU reported"


def fmt_amount(x: float) -> str:
    """A CPU/GPU amount as people write it: 4, 0.50."""
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


class ResourcesBusy(RayctlError):
    """The cluster could run the job, but other work holds the resources now (exit 1)."""

    job_stopped = True  # when raised by `follow`, the job was already stopped


def check_fits(address: str, needs_cpus: float, needs_gpus: float, res: dict | None = None) -> None:
    """InputError (exit 2) when the cluster has fewer CPUs/GPUs in all than the job needs."""
    if not needs_cpus and not needs_gpus:
        return
    res = res if res is not None else cluster_resources(address)
    if res is None:
        return
    for name, need in (("CPU", needs_cpus), ("GPU", needs_gpus)):
        total = res.get(name, (0.0, 0.0))[1]
        if need and need > total + 1e-9:
            what = "no GPUs" if name == "GPU" and total == 0 else f"{fmt_amount(total)} {name}(s) in all"
            fix = ("run it on a cluster with GPUs (target: cloud), or set the workload to use CPUs"
                   if name == "GPU" else
                   "lower the workload's workers/concurrency, or give the cluster more CPUs (for the local "
                   "cluster: resources.cpus in the recipe or RAYCTL_LOCAL_CPUS, then `rayctl down`)")
            raise InputError(f"the job needs {fmt_amount(need)} {name}(s) but the Ray cluster at {redact_url(address)} has {what}; "
                             f"it would wait forever. {fix}.")


def check_resources(address: str, needs_cpus: float, needs_gpus: float, *, busy_hint: str = "",
                    settle_s: float = 8.0) -> list[str]:
    """Refuse a job that cannot be scheduled instead of letting it hang.

    Never fits (the cluster has fewer CPUs/GPUs in all) -> InputError (exit 2).
    Fits, but other work holds them -> ResourcesBusy (exit 1), after `settle_s` for
    a job that just ended to give its resources back. Returns warnings.
    """
    if not needs_cpus and not needs_gpus:
        return []
    res = cluster_resources(address)
    if res is None:
        return [f"could not read the cluster's resources at {redact_url(address)}; submitting without a resource check"]
    check_fits(address, needs_cpus, needs_gpus, res)
    deadline = time.monotonic() + settle_s
    while True:
        short = [(n, need, res.get(n, (0.0, 0.0))) for n, need in (("CPU", needs_cpus), ("GPU", needs_gpus))
                 if need and need > res.get(n, (0.0, 0.0))[1] - res.get(n, (0.0, 0.0))[0] + 1e-9]
        if not short:
            return []
        if time.monotonic() > deadline:
            n, need, (used, total) = short[0]
            raise ResourcesBusy(
                f"the job needs {fmt_amount(need)} {n}(s) but only {fmt_amount(total - used)} of {fmt_amount(total)} are free on "
                f"the Ray cluster at {redact_url(address)}; the rest are held by other work{busy_hint}. It would wait "
                "for them; stop that work first (`rayctl stop RUN`) or launch again later.")
        time.sleep(1.0)
        res = cluster_resources(address) or res
