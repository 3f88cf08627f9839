"""Live GCP GPU availability per zone and GPU quota per region (google-cloud-compute).

- `acceleratorTypes.aggregatedList` (one paginated call for every zone): which GPUs each
  zone offers and how many per VM, names normalised to SkyPilot's (`nvidia-tesla-a100`
  -> A100, `nvidia-h100-80gb` -> H100, ...).
- `regions.get` per region: the region's quotas; rayctl keeps the GPU metrics
  (`NVIDIA_*_GPUS`, `PREEMPTIBLE_NVIDIA_*_GPUS`) with limit and usage.

Every call has a timeout and a bounded retry (google-api-core's default retry for these
methods would wait up to 600 s on a 503). The client is the real one; tests point it at
a local HTTP server (`client_options={"api_endpoint": "http://127.0.0.1:PORT"}`,
anonymous credentials, REST transport).
"""

from __future__ import annotations

import concurrent.futures as cf

GPU_METRIC_HINT = "GPUS"


def normalize_accelerator(name: str) -> str | None:
    """SkyPilot's accelerator name for a GCP accelerator type, or None to skip it."""
    n = name.lower()
    if not n.startswith("nvidia-") or "vws" in n:
        return None  # TPUs, virtual-workstation variants
    n = n.replace("nvidia-", "").replace("tesla-", "").upper()
    if "H100-MEGA" in n:
        return "H100-MEGA"
    if "H100-80GB" in n or n == "H100":
        return "H100"
    if "H200" in n:
        return "H200"
    if "B200" in n:
        return "B200"
    if "RTX-PRO-6000" in n:
        return "RTXPRO6000"
    return n  # A100, A100-80GB, L4, T4, V100, P100, P4, K80


def _retry(retry_s: float):
    from google.api_core import exceptions as gexc
    from google.api_core import retry as gretry

    return gretry.Retry(initial=0.2, maximum=2.0, multiplier=2.0, timeout=retry_s,
                        predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError,
                                                           gexc.TooManyRequests, gexc.DeadlineExceeded))


def clients(*, credentials=None, client_options=None):
    from google.cloud import compute_v1

    kw = {"transport": "rest"}
    if credentials is not None:
        kw["credentials"] = credentials
    if client_options is not None:
        kw["client_options"] = client_options
    return compute_v1.AcceleratorTypesClient(**kw), compute_v1.RegionsClient(**kw)


def accelerators(acc_client, project: str, *, timeout_s: float = 30.0, retry_s: float = 15.0) -> list[dict]:
    """Rows of `gcp/accelerators.csv`: every (GPU, zone) with the most per VM."""
    from google.cloud import compute_v1

    req = compute_v1.AggregatedListAcceleratorTypesRequest(project=project)
    rows: dict = {}
    for scope, scoped in acc_client.aggregated_list(request=req, timeout=timeout_s, retry=_retry(retry_s)):
        if not scope.startswith("zones/"):
            continue
        zone = scope.split("/", 1)[1]
        for at in scoped.accelerator_types:
            name = normalize_accelerator(at.name)
            if name is None:
                continue
            key = (name, zone)
            rows[key] = max(rows.get(key, 0), int(at.maximum_cards_per_instance or 0))
    return [{"AcceleratorName": n, "Region": z.rsplit("-", 1)[0], "AvailabilityZone": z, "MaxCount": c}
            for (n, z), c in sorted(rows.items())]


def region_quotas(reg_client, project: str, region: str, *, timeout_s: float = 30.0,
                  retry_s: float = 15.0) -> list[dict]:
    """Rows of `gcp/quotas.csv` for one region (GPU metrics only)."""
    r = reg_client.get(project=project, region=region, timeout=timeout_s, retry=_retry(retry_s))
    return [{"Region": region, "Metric": q.metric, "Limit": q.limit, "Usage": q.usage}
            for q in r.quotas if GPU_METRIC_HINT in (q.metric or "")]


def fetch(project: str, regions: list[str], *, credentials=None, client_options=None, timeout_s: float = 30.0,
          retry_s: float = 15.0, max_workers: int = 8):
    """(accelerator rows or None on failure, quota rows, {scope: error})."""
    from ...redact import redact

    acc_client, reg_client = clients(credentials=credentials, client_options=client_options)
    errors: dict[str, str] = {}
    try:
        acc_rows = accelerators(acc_client, project, timeout_s=timeout_s, retry_s=retry_s)
    except Exception as e:
        acc_rows = None
        errors["acceleratorTypes"] = f"{type(e).__name__}: {redact(str(e))[:200]}"
    quota_rows: list[dict] = []
    with cf.ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(regions) or 1))) as pool:
        futs = {pool.submit(region_quotas, reg_client, project, r, timeout_s=timeout_s, retry_s=retry_s): r
                for r in sorted(set(regions))}
        for f in cf.as_completed(futs):
            try:
                quota_rows.extend(f.result())
            except Exception as e:
                errors[futs[f]] = f"{type(e).__name__}: {redact(str(e))[:200]}"
    quota_rows.sort(key=lambda r: (r["Region"], r["Metric"]))
    return acc_rows, quota_rows, errors
