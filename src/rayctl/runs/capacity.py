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
from ..providers.local.health import alive_node_rows, resource_usage
from .cluster_api import _get


def cluster_resources(address: str, timeout: float = 5.0) -> dict | None:
    """{"CPU": (used, total), "GPU": (used, total), ..., "_demand": [...]}; None if unknown.

    From the dashboard's autoscaler status (updated every few seconds by the head).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            out = resource_usage(_get(address, "/api/cluster_status?format=0", 3.0))
            if out:
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


# ---------------------------------------------------------------- nodes and accelerators (existing clusters)

NODES_PATH = "/api/v0/nodes?limit=10000&detail=false"


def cluster_nodes(address: str, timeout: float = 10.0) -> list[dict] | None:
    """The cluster's alive nodes, from Ray's state API (`/api/v0/nodes`, what `ray list nodes` and
    `ray.util.state.list_nodes(address=...)` read): [{"id", "ip", "head", "resources": {name: total}}].
    None when the dashboard does not answer it (an older Ray, a proxy that hides it)."""
    try:
        rows = alive_node_rows(_get(address, NODES_PATH, timeout))
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if rows is None:
        return None
    out = []
    for n in rows:
        res = {}
        for k, v in (n.get("resources_total") or {}).items():
            try:
                res[str(k)] = float(v)
            except (TypeError, ValueError):
                continue
        out.append({"id": n.get("node_id"), "ip": n.get("node_ip"), "head": bool(n.get("is_head_node")),
                    "resources": res})
    return out


def node_accelerator(node: dict) -> str | None:
    """The accelerator type Ray detected on a node (its `accelerator_type:NAME` resource), or None."""
    for k in node["resources"]:
        if k.startswith("accelerator_type:"):
            return k.split(":", 1)[1]
    return None


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def accelerator_matches(spec_name: str, ray_type: str | None) -> bool:
    """A recipe accelerator name (SkyPilot's spelling: A100-80GB, H100-SXM, RTXPRO6000) against the type Ray
    reports for a node (its family: A100, H100, RTX-PRO-6000). Ray does not tell memory sizes or form
    factors apart, so the family decides; a node with GPUs but no reported type matches any name."""
    if ray_type is None:
        return True
    return _norm(ray_type) in (_norm(spec_name), _norm(spec_name.split("-")[0]))


def node_fits(node: dict, spec) -> bool:
    """Whether a node has `spec` (an AcceleratorSpec: name, count per node)."""
    return (node["resources"].get("GPU", 0.0) + 1e-9 >= spec.count
            and accelerator_matches(spec.name, node_accelerator(node)))


def describe_nodes(nodes: list[dict]) -> str:
    """"2 alive nodes: 1 with 8 CPUs and 8 GPUs (A100), 1 with 4 CPUs and no GPU"."""
    shapes: dict[str, int] = {}
    for n in nodes:
        cpus = fmt_amount(n["resources"].get("CPU", 0.0))
        gpus = n["resources"].get("GPU", 0.0)
        acc = node_accelerator(n)
        g = f"{fmt_amount(gpus)} GPU(s)" + (f" ({acc})" if acc else "") if gpus else "no GPU"
        shape = f"{cpus} CPU(s) and {g}"
        shapes[shape] = shapes.get(shape, 0) + 1
    if not nodes:
        return "no alive node"
    parts = ", ".join(f"{k} with {s}" for s, k in shapes.items())
    return f"{len(nodes)} alive node(s): {parts}"


def check_nodes(address: str, nodes: int, accelerators: tuple = (), *, asks: str = "the recipe",
                listed: list[dict] | None = None) -> list[str]:
    """InputError (exit 2) when the cluster at `address` has fewer alive nodes than `nodes`, or fewer
    than `nodes` nodes that each have one of `accelerators` (alternatives, NAME:COUNT per node).
    Returns warnings (the node list could not be read: submitted without this check)."""
    if nodes <= 1 and not accelerators:
        return []
    found = listed if listed is not None else cluster_nodes(address)
    if found is None:
        return [f"could not list the nodes of the Ray cluster at {redact_url(address)} (/api/v0/nodes); "
                "submitting without checking it has the nodes and accelerators the recipe asks for"]
    want = f"{nodes} node(s)"
    if accelerators:
        want += " with " + " or ".join(f"{a.count} x {a.name}" for a in accelerators) + " each"
    if len(found) >= nodes and (not accelerators
                                or any(sum(node_fits(n, a) for n in found) >= nodes for a in accelerators)):
        return []
    fitting = max((sum(node_fits(n, a) for n in found) for a in accelerators), default=len(found))
    short = (f"only {fitting} of them ha{'s' if fitting == 1 else 've'} the accelerators"
             if accelerators and len(found) >= nodes else "")
    raise InputError(
        f"{asks} asks for {want} (resources.nodes: {nodes}"
        + (", resources.accelerators" if accelerators else "") + f"), but the Ray cluster at {redact_url(address)} "
        f"has {describe_nodes(found)}" + (f"; {short}" if short else "") + ". The job would wait forever for "
        "the rest. Run it on a cluster that has them, lower resources.nodes"
        + (" or resources.accelerators" if accelerators else "") + ", or use --target cloud.")


def check_recipe_nodes(address: str, recipe) -> list[str]:
    """`check_nodes` for a recipe's resources.nodes and resources.accelerators; the message names the
    recipe file and the line of its resources."""
    line, _ = recipe.where(("resources", "nodes")) if recipe.resources.nodes > 1 else recipe.where(("resources",))
    asks = f"{recipe.path}" + (f":{line}" if line else "") + f": recipe '{recipe.name}'"
    return check_nodes(address, recipe.resources.nodes, recipe.resources.accelerators, asks=asks)
