"""`rayctl pricing refresh`: fetch live cloud data into rayctl's price cache.

(The credential-free download of SkyPilot's hosted catalog is `rayctl.planning.refresh.hosted`; it runs
first, so these overlays ask about the fresh catalog's offers.)

Which regions and instance types to ask about comes from the base catalog (the one the
planner reads: per cloud rayctl's refreshed catalog, ~/.sky/catalogs/v8 or the shipped snapshot): the GPU offers' AWS regions and
instance types, the GCP regions. Results are merged into `$RAYCTL_HOME/pricing-cache/`
(see `rayctl.planning.price_cache`) region by region: a region whose calls fail keeps its old
rows, and `meta.json` records the error so `rayctl plan` can say how old the data is.
"""

from __future__ import annotations

import datetime as dt

from .. import price_cache


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def base_catalog():
    """The catalog the overlay applies to, without the overlay."""
    from ..catalog import load

    return load(None, overlay=False)


def _targets(cat, cloud: str, regions: list[str] | None) -> dict[str, set]:
    out: dict[str, set] = {}
    for o in cat.offers:
        if o.cloud == cloud and (not regions or o.region in regions):
            out.setdefault(o.region, set()).add(o.instance_type)
    return out


def _merge(old: list[dict], new: list[dict], replaced_regions: set) -> list[dict]:
    return [r for r in old if r.get("Region") not in replaced_regions] + new


def refresh_aws(*, regions: list[str] | None = None, client_factory=None, timeout_s: float = 20.0,
                cat=None, d=None) -> dict:
    from . import aws

    d = d or price_cache.cache_dir()
    cat = cat or base_catalog()
    targets = {r: sorted(t) for r, t in _targets(cat, "aws", regions).items()}
    meta = price_cache.read_meta(d)
    m = dict(meta.get("aws") or {})
    m["attempted_at"] = _now_iso()
    if not targets:
        m["error"] = "no AWS GPU offers in the base catalog" + (f" for regions {', '.join(regions)}" if regions else "")
        meta["aws"] = m
        price_cache.write_meta(meta, d)
        return {"ok": False, "rows": 0, "regions": [], "errors": {"*": m["error"]}}
    rows, names, errors = aws.fetch(targets, client_factory=client_factory, timeout_s=timeout_s)
    ok_regions = sorted(set(targets) - set(errors))
    if ok_regions:
        f = d / "aws" / "spot_prices.csv"
        header = ["InstanceType", "Region", "AvailabilityZone", "AvailabilityZoneName", "SpotPrice", "Timestamp"]
        price_cache.write_csv(f, header, _merge(price_cache._read_csv(f), rows, set(ok_regions)))
        mf = d / "aws" / "az_mappings.csv"
        old = {r["AvailabilityZone"]: r["AvailabilityZoneName"] for r in price_cache._read_csv(mf)}
        old.update({zid: name for name, zid in names.items()})
        price_cache.write_csv(mf, ["AvailabilityZoneName", "AvailabilityZone"],
                              [{"AvailabilityZoneName": n, "AvailabilityZone": z} for z, n in sorted(old.items())])
        m["fetched_at"] = m["attempted_at"]
        m["regions"] = sorted(set(m.get("regions") or ()) | set(ok_regions))
    m["error"] = ("; ".join(f"{r}: {e}" for r, e in sorted(errors.items()))[:600]) if errors else None
    meta["aws"] = m
    price_cache.write_meta(meta, d)
    return {"ok": bool(ok_regions), "rows": len(rows), "regions": ok_regions, "errors": errors}


def refresh_gcp(*, project: str | None = None, regions: list[str] | None = None, credentials=None,
                client_options=None, timeout_s: float = 30.0, retry_s: float = 15.0, cat=None, d=None) -> dict:
    from . import gcp

    d = d or price_cache.cache_dir()
    cat = cat or base_catalog()
    target_regions = sorted(_targets(cat, "gcp", regions))
    meta = price_cache.read_meta(d)
    m = dict(meta.get("gcp") or {})
    m["attempted_at"] = _now_iso()
    if project is None:
        from ..credentials import gcp_project

        project = gcp_project()
        if project is None:
            try:
                import google.auth

                project = google.auth.default()[1]
            except Exception:
                project = None
    if not project:
        m["error"] = "no GCP project (set GOOGLE_CLOUD_PROJECT or `gcloud config set project`)"
        meta["gcp"] = m
        price_cache.write_meta(meta, d)
        return {"ok": False, "errors": {"*": m["error"]}}
    acc_rows, quota_rows, errors = gcp.fetch(project, target_regions, credentials=credentials,
                                             client_options=client_options, timeout_s=timeout_s, retry_s=retry_s)
    ok = False
    if acc_rows is not None:
        price_cache.write_csv(d / "gcp" / "accelerators.csv",
                              ["AcceleratorName", "Region", "AvailabilityZone", "MaxCount"], acc_rows)
        m["zones_complete"] = True
        ok = True
    ok_regions = sorted(set(target_regions) - set(errors))
    if ok_regions:
        f = d / "gcp" / "quotas.csv"
        price_cache.write_csv(f, ["Region", "Metric", "Limit", "Usage"],
                              _merge(price_cache._read_csv(f), quota_rows, set(ok_regions)))
        m["regions"] = sorted(set(m.get("regions") or ()) | set(ok_regions))
        ok = True
    if ok:
        m["fetched_at"] = m["attempted_at"]
        m["project"] = project
    m["error"] = ("; ".join(f"{r}: {e}" for r, e in sorted(errors.items()))[:600]) if errors else None
    meta["gcp"] = m
    price_cache.write_meta(meta, d)
    return {"ok": ok, "accelerator_rows": len(acc_rows or []), "quota_rows": len(quota_rows),
            "regions": ok_regions, "errors": errors, "project": project}
