"""GPU offers: which price data to use, and listings of it (`rayctl gpus`).

The source, in documented order (`resolve`): --catalog, $RAYCTL_CATALOG (whole
folders); otherwise per cloud: rayctl's refreshed catalog file or SkyPilot's cache file
~/.sky/catalogs/v8/<cloud>/vms.csv (whichever is newer), else rayctl's shipped snapshot;
`load()` overlays live prices (`price_cache`) on that per-cloud choice. The CSV reading (v7/v8 schemas, GCP host + accelerator rows, implausible
prices) is in `catalog_csv.py`; `Offer` and `Catalog` are in `offers.py`.

The hot path is the standard library only (csv), so a cold `rayctl plan` stays well
under half a second; pandas is never imported here.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .catalog_csv import declared_date, load_dir, load_files
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


def _vms_mtimes(d: Path) -> dict[str, float]:
    """cloud -> modification time of `d/<cloud>/vms.csv`, for the clouds that have one."""
    try:
        names = os.listdir(d)
    except OSError:
        return {}
    out = {}
    for c in names:
        try:
            st = os.stat(d / c / "vms.csv")
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[c] = st.st_mtime
    return out


@dataclass
class Selection:
    """The price data to use: one explicit folder (`folder`), or one file per cloud
    (`files`: (cloud, vms.csv, source label, the source's declared date))."""
    label: str
    folder: Path | None = None
    files: list = field(default_factory=list)


def resolve(flag: str | None = None) -> Selection:
    """The price data to use, in documented order: --catalog, then $RAYCTL_CATALOG (each a
    whole folder, used as it is); otherwise per cloud: the newer of rayctl's refreshed
    catalog file and SkyPilot's cache file ~/.sky/catalogs/v8 (rayctl's on a tie), else
    rayctl's shipped snapshot. SkyPilot caches only the clouds it has used and a refresh
    may have fetched only some, so neither may hide the other clouds. `load()` overlays
    rayctl's live data (`rayctl pricing refresh`, see `price_cache`) on the per-cloud
    choice, never on an explicit --catalog / $RAYCTL_CATALOG."""
    if flag:
        p = Path(flag).expanduser()
        if not p.is_dir():
            raise InputError(f"--catalog {flag}: no such directory (expected a folder holding <cloud>/vms.csv)")
        if not _has_vms(p):
            raise InputError(f"--catalog {flag}: holds no <cloud>/vms.csv file (SkyPilot's catalog layout)")
        return Selection(flag, folder=p)
    env = os.environ.get("RAYCTL_CATALOG")
    if env:
        p = Path(env).expanduser()
        if not p.is_dir() or not _has_vms(p):
            raise InputError(f"$RAYCTL_CATALOG={env}: not a folder holding <cloud>/vms.csv (SkyPilot's catalog layout)")
        return Selection(env, folder=p)
    ours, sky, shipped = refreshed_dir(), skypilot_cache_dir(), shipped_dir()
    ours_label = REFRESHED_PREFIX + str(ours)
    m_ours, m_sky = _vms_mtimes(ours), _vms_mtimes(sky)
    chosen: dict[str, tuple[Path, str, str | None]] = {}
    for c in set(m_ours) | set(m_sky):
        if c in m_ours and (c not in m_sky or m_ours[c] >= m_sky[c]):
            chosen[c] = (ours / c / "vms.csv", ours_label, None)
        else:
            chosen[c] = (sky / c / "vms.csv", SKY_CACHE_LABEL, None)
    rest = [c for c in _vms_mtimes(shipped) if c not in chosen]
    if rest:
        declared = declared_date(shipped)
        for c in rest:
            chosen[c] = (shipped / c / "vms.csv", SHIPPED_LABEL, declared)
    files = [(c, *chosen[c]) for c in sorted(chosen)]
    return Selection(_mix_label(files), files=files)


def _mix_label(files: list) -> str:
    """One source's own label when every cloud comes from it, else "auto: aws from X, 10
    clouds from rayctl-shipped:pricing" (sources by their first cloud, the snapshot last)."""
    by_src: dict[str, list[str]] = {}
    for cloud, _, src, _ in files:
        by_src.setdefault(src, []).append(cloud)
    if len(by_src) == 1:
        return next(iter(by_src))
    order = sorted(by_src, key=lambda s: (s == SHIPPED_LABEL, by_src[s][0]))
    parts = [(", ".join(by_src[s]) if len(by_src[s]) <= 3 else f"{len(by_src[s])} clouds") + f" from {s}"
             for s in order]
    return "auto: " + "; ".join(parts)


def load(flag: str | None = None, clouds: tuple[str, ...] = (), overlay: bool = True) -> Catalog:
    """The catalog to plan with; `overlay=False` leaves out rayctl's live data (the base
    `rayctl pricing refresh` asks about)."""
    sel = resolve(flag)
    if sel.folder is not None:
        return load_dir(sel.folder, sel.label, clouds)
    cat = load_files([f for f in sel.files if not clouds or f[0] in clouds], sel.label)
    if overlay:
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
