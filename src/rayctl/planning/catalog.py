"""GPU offers: which price data to use, and listings of it (`rayctl gpus`).

The source, in documented order (`resolve`): --catalog, $RAYCTL_CATALOG, rayctl's
refreshed catalog or SkyPilot's cache ~/.sky/catalogs/v8 (whichever holds the newer
file), rayctl's shipped snapshot; `load()` overlays live prices (`price_cache`) on the
last three. The CSV reading (v7/v8 schemas, GCP host + accelerator rows, implausible
prices) is in `catalog_csv.py`; `Offer` and `Catalog` are in `offers.py`.

The hot path is the standard library only (csv), so a cold `rayctl plan` stays well
under half a second; pandas is never imported here.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from .catalog_csv import load_dir  # noqa: F401  (callers use catalog.load_dir)
from .offers import Catalog, lower_price
from ..errors import InputError
from ..settings import rayctl_home, shipped_dir, skypilot_cache_dir

STALE_DAYS = 7


# ---------------------------------------------------------------- where the data comes from

def refreshed_dir() -> Path:
    """Where `rayctl pricing refresh` keeps SkyPilot's hosted catalog (`<cloud>/vms.csv`)."""
    return rayctl_home() / "catalog" / "v8"


SHIPPED_LABEL = "rayctl-shipped:pricing"
SKY_CACHE_LABEL = "skypilot-cache:~/.sky/catalogs/v8"
REFRESHED_PREFIX = "rayctl-refreshed:"


def _has_vms(d: Path) -> bool:
    try:
        return any((d / c / "vms.csv").is_file() for c in os.listdir(d))
    except OSError:
        return False


def _newest_vms(d: Path) -> float | None:
    """Modification time of the newest `<cloud>/vms.csv` in `d` (None: the folder has none)."""
    try:
        names = os.listdir(d)
    except OSError:
        return None
    newest = None
    for c in names:
        try:
            m = os.stat(d / c / "vms.csv").st_mtime
        except OSError:
            continue
        newest = m if newest is None else max(newest, m)
    return newest


def resolve(flag: str | None = None) -> tuple[Path, str]:
    """(directory, label) of the price data to use, in documented order: --catalog,
    $RAYCTL_CATALOG, rayctl's refreshed catalog or SkyPilot's cache ~/.sky/catalogs/v8
    (whichever holds the newer file; rayctl's on a tie), rayctl's shipped snapshot.
    `load()` overlays rayctl's live data (`rayctl pricing refresh`, see `price_cache`) on
    the last three, never on an explicit --catalog / $RAYCTL_CATALOG."""
    if flag:
        p = Path(flag).expanduser()
        if not p.is_dir():
            raise InputError(f"--catalog {flag}: no such directory (expected a folder holding <cloud>/vms.csv)")
        if not _has_vms(p):
            raise InputError(f"--catalog {flag}: holds no <cloud>/vms.csv file (SkyPilot's catalog layout)")
        return p, flag
    env = os.environ.get("RAYCTL_CATALOG")
    if env:
        p = Path(env).expanduser()
        if not p.is_dir() or not _has_vms(p):
            raise InputError(f"$RAYCTL_CATALOG={env}: not a folder holding <cloud>/vms.csv (SkyPilot's catalog layout)")
        return p, env
    ours, sky = refreshed_dir(), skypilot_cache_dir()
    m_ours, m_sky = _newest_vms(ours), _newest_vms(sky)
    if m_ours is not None and (m_sky is None or m_ours >= m_sky):
        return ours, REFRESHED_PREFIX + str(ours)
    if m_sky is not None:
        return sky, SKY_CACHE_LABEL
    return shipped_dir(), SHIPPED_LABEL


def load(flag: str | None = None, clouds: tuple[str, ...] = ()) -> Catalog:
    path, label = resolve(flag)
    # rayctl's refreshed catalog is dated by its oldest file: a cloud whose download keeps
    # failing keeps its last good copy, and the plan should say how old that is.
    cat = load_dir(path, label, clouds, oldest=label.startswith(REFRESHED_PREFIX))
    if not flag and not os.environ.get("RAYCTL_CATALOG"):
        from . import price_cache

        cat = price_cache.overlay(cat)
    return cat


def stale_warning(cat: Catalog, today: dt.date | None = None) -> str | None:
    """The warning for price data older than STALE_DAYS (None: fresh or undated)."""
    age = cat.age_days(today)
    if age is None or age <= STALE_DAYS:
        return None
    return (f"price data from {cat.source} is {age} days old (as of {cat.as_of}); prices may have changed "
            "(run `rayctl pricing refresh`, no credentials needed, or pass --catalog)")


_warned: set = set()


def warn_stale_once(cat: Catalog, emit) -> None:
    """Call `emit(message)` for stale data at most once per process (one command) and source."""
    msg = stale_warning(cat)
    if msg and cat.source not in _warned:
        _warned.add(cat.source)
        emit(msg)


# ---------------------------------------------------------------- listings (`rayctl gpus`)

def _per_gpu(price, count):
    return None if price is None else round(price / count, 6)


def summary(cat: Catalog) -> list[dict]:
    """One row per accelerator: counts per node, clouds, cheapest $/GPU-h on-demand and spot."""
    acc: dict = {}
    for o in cat.offers:
        a = acc.setdefault(o.accelerator, {"counts": set(), "clouds": set(), "od": None, "spot": None})
        a["counts"].add(o.count)
        a["clouds"].add(o.cloud)
        a["od"] = lower_price(a["od"], _per_gpu(o.price, o.count))
        a["spot"] = lower_price(a["spot"], _per_gpu(o.spot_price, o.count))
    return [{"accelerator": k, "counts": sorted(v["counts"]), "clouds": sorted(v["clouds"]),
             "min_hourly_usd_per_gpu": v["od"], "min_spot_hourly_usd_per_gpu": v["spot"]}
            for k, v in sorted(acc.items(), key=lambda kv: kv[0].lower())]


def cheapest_per_region(cat: Catalog, name: str, spot: bool = False, count: int | None = None) -> list[dict]:
    """Cheapest offer per (count, cloud, region) for one accelerator, cheapest first within a count."""
    best: dict = {}
    for o in cat.offers:
        if o.accelerator != name or (count is not None and o.count != count):
            continue
        p = o.spot_price if spot else o.price
        if p is None:
            continue
        key = (o.count, o.cloud, o.region)
        cur = best.get(key)
        if cur is None or (p, o.zone or "", o.instance_type) < (cur[0], cur[1].zone or "", cur[1].instance_type):
            best[key] = (p, o)
    rows = sorted(best.values(), key=lambda po: (po[1].count, po[0], po[1].cloud, po[1].region))
    return [{"accelerator": o.accelerator, "accelerator_count": o.count, "cloud": o.cloud, "region": o.region,
             "zone": o.zone, "instance_type": o.instance_type, "vcpus": o.vcpus, "memory_gib": o.memory_gib,
             "hourly_usd": o.price, "spot_hourly_usd": o.spot_price} for _, o in rows]
