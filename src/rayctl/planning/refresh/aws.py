"""Live AWS spot prices per availability zone (EC2 `describe_spot_price_history`).

For each region (concurrently): the account's zone names -> zone IDs
(`describe_availability_zones`; the catalog keys AWS zones by ID), then the spot price
history at *now* for the region's GPU instance types (`StartTime=now` returns the price
in effect per AZ), paginated, keeping the latest price per (instance type, AZ).

Every call has botocore connect/read timeouts and a bounded retry, and each region a
deadline; a region that fails is reported and keeps its old cached rows.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import time

PRODUCT = "Linux/UNIX"
CHUNK = 50  # instance types per request
REGION_DEADLINE_S = 90.0


def _config(timeout_s: float):
    from botocore.config import Config

    return Config(connect_timeout=min(5.0, timeout_s), read_timeout=timeout_s,
                  retries={"max_attempts": 2, "mode": "standard"})


def default_client_factory(timeout_s: float = 20.0):
    import boto3

    session = boto3.session.Session()

    def make(region: str):
        return session.client("ec2", region_name=region, config=_config(timeout_s))

    return make


def zone_mapping(ec2) -> dict[str, str]:
    """zone name -> zone ID for the client's region."""
    res = ec2.describe_availability_zones(Filters=[{"Name": "zone-type", "Values": ["availability-zone"]}])
    return {z["ZoneName"]: z["ZoneId"] for z in res.get("AvailabilityZones", []) if z.get("ZoneId")}


def region_spot_prices(ec2, region: str, instance_types: list[str], *, now: dt.datetime | None = None,
                       deadline_s: float = REGION_DEADLINE_S) -> tuple[list[dict], dict[str, str]]:
    """(rows, zone name -> ID) for one region; rows in `aws/spot_prices.csv` shape."""
    started = time.monotonic()
    names = zone_mapping(ec2)
    now = now or dt.datetime.now(dt.timezone.utc)
    latest: dict = {}
    types = sorted(set(instance_types))
    pag = ec2.get_paginator("describe_spot_price_history")
    for i in range(0, len(types), CHUNK):
        for page in pag.paginate(InstanceTypes=types[i:i + CHUNK], ProductDescriptions=[PRODUCT], StartTime=now):
            for p in page.get("SpotPriceHistory", []):
                key = (p["InstanceType"], p["AvailabilityZone"])
                ts = p["Timestamp"]
                if key not in latest or ts > latest[key][0]:
                    latest[key] = (ts, p["SpotPrice"])
            if time.monotonic() - started > deadline_s:
                raise TimeoutError(f"{region}: spot price history took more than {deadline_s:g} s")
    rows = []
    for (itype, az), (ts, price) in sorted(latest.items()):
        zid = names.get(az)
        if zid is None:
            continue  # an AZ this account cannot see
        rows.append({"InstanceType": itype, "Region": region, "AvailabilityZone": zid,
                     "AvailabilityZoneName": az, "SpotPrice": f"{float(price):.6f}",
                     "Timestamp": ts.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                     if hasattr(ts, "astimezone") else str(ts)})
    return rows, names


def fetch(regions_types: dict[str, list[str]], *, client_factory=None, timeout_s: float = 20.0,
          now: dt.datetime | None = None, max_workers: int = 8) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """Spot prices for {region: [instance types]}: (rows, zone name -> ID, {region: error})."""
    make = client_factory or default_client_factory(timeout_s)
    rows: list[dict] = []
    names: dict[str, str] = {}
    errors: dict[str, str] = {}

    def one(region):
        return region_spot_prices(make(region), region, regions_types[region], now=now)

    with cf.ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(regions_types)))) as pool:
        futs = {pool.submit(one, r): r for r in sorted(regions_types)}
        for f in cf.as_completed(futs):
            region = futs[f]
            try:
                r, n = f.result()
            except Exception as e:
                from ...redact import redact

                errors[region] = f"{type(e).__name__}: {redact(str(e))[:200]}"
                continue
            rows.extend(r)
            names.update(n)
    rows.sort(key=lambda r: (r["Region"], r["InstanceType"], r["AvailabilityZone"]))
    return rows, names, errors


def fetch_zone_mapping(regions: list[str], *, client_factory=None, timeout_s: float = 10.0) -> dict[str, str]:
    """zone ID -> zone name for these regions (used at launch when no mapping is cached)."""
    make = client_factory or default_client_factory(timeout_s)
    out: dict[str, str] = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, min(8, len(regions)))) as pool:
        for names in pool.map(lambda r: zone_mapping(make(r)), regions):
            out.update({zid: name for name, zid in names.items()})
    from .. import price_cache

    if out:
        price_cache.write_csv(price_cache.cache_dir() / "aws" / "az_mappings.csv",
                              ["AvailabilityZoneName", "AvailabilityZone"],
                              [{"AvailabilityZoneName": n, "AvailabilityZone": z} for z, n in sorted(out.items())])
    return out
