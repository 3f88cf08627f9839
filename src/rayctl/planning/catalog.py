"""GPU offers from price data in SkyPilot's catalog layout (`<cloud>/vms.csv`).

Reads the v7 and v8 CSV schemas of every cloud folder present (columns are found by
name, so per-cloud column order and v8's extra `Arch` column do not matter) with the
semantics SkyPilot's own catalog code has:

- GCP prices a GPU VM as a host row (`a2-*`, `a3-*`, `g2-*`, `n1-*`; empty
  AcceleratorName) plus an accelerator row (empty InstanceType) in the same zone; the
  offer costs host + accelerators, spot with spot.
- A row with an empty price is not an offer for that pricing mode. A price of 0 or
  less is not a real price either (e.g. vast.ai lists `SpotPrice` 0.00 for bid-based
  instances); such rows are dropped and counted in the catalog's warnings.
- A price must also be plausible: finite and between $0.001 and $1,000 per hour for
  one instance (`PRICE_MIN`..`PRICE_MAX`; the dearest GPU VMs list about $100/h).
  `inf`, `nan`, `1e400` or `1e-300` are typos or broken exports, never real prices:
  that pricing mode is dropped, and the catalog carries one warning per file with the
  count. Non-finite vCPUs, MemoryGiB or AcceleratorCount are dropped the same way.
- AWS zones are zone IDs (`use1-az2`), kept as they are.
- Duplicate rows for one (cloud, instance type, region, zone) are merged, each
  pricing mode taking its lowest listed price.

The hot path is the standard library only (csv), so a cold `rayctl plan` stays well
under half a second; pandas is never imported here.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..settings import rayctl_home, shipped_dir, skypilot_cache_dir

STALE_DAYS = 7

# Plausible $/h for one instance (host + its accelerators). Outside this band a price
# is a typo or a broken export (inf, nan, 1e400, 1e-300) and is dropped with a warning.
PRICE_MIN = 0.001
PRICE_MAX = 1000.0

# GCP: accelerator -> count -> host VM types (GCP ties A100 to A2, L4 to G2, H100 to A3...).
GCP_HOSTS = {
    "A100": {1: ["a2-highgpu-1g"], 2: ["a2-highgpu-2g"], 4: ["a2-highgpu-4g"], 8: ["a2-highgpu-8g"],
             16: ["a2-megagpu-16g"]},
    "A100-80GB": {1: ["a2-ultragpu-1g"], 2: ["a2-ultragpu-2g"], 4: ["a2-ultragpu-4g"], 8: ["a2-ultragpu-8g"]},
    "L4": {1: ["g2-standard-4", "g2-standard-8", "g2-standard-12", "g2-standard-16", "g2-standard-32"],
           2: ["g2-standard-24"], 4: ["g2-standard-48"], 8: ["g2-standard-96"]},
    "H100": {1: ["a3-highgpu-1g"], 2: ["a3-highgpu-2g"], 4: ["a3-highgpu-4g"], 8: ["a3-highgpu-8g"]},
    "H100-MEGA": {8: ["a3-megagpu-8g"]},
    "H200": {8: ["a3-ultragpu-8g"]},
    "B200": {8: ["a4-highgpu-8g"]},
    "RTXPRO6000": {1: ["g4-standard-48"], 2: ["g4-standard-96"], 4: ["g4-standard-192"], 8: ["g4-standard-384"]},
}
# Other GCP GPUs (T4, V100, P100, P4, K80) attach to N1 hosts; SkyPilot's default host
# has this many vCPUs (and 4 GiB memory per vCPU).
_GCP_N1_CPUS = {"K80": {1: 4, 2: 8, 4: 16, 8: 32}, "V100": {1: 8, 2: 16, 4: 32, 8: 64},
                "T4": {1: 4, 2: 8, 4: 48}, "DEFAULT": {1: 8, 2: 16, 4: 32, 8: 64}}


class Offer:
    """One (cloud, region, zone, instance type) with its on-demand and spot $/h per node."""

    __slots__ = ("cloud", "region", "zone", "instance_type", "accelerator", "count", "vcpus",
                 "memory_gib", "price", "spot_price")

    def __init__(self, cloud, region, zone, instance_type, accelerator, count, vcpus, memory_gib,
                 price, spot_price):
        self.cloud = cloud
        self.region = region
        self.zone = zone
        self.instance_type = instance_type
        self.accelerator = accelerator
        self.count = count
        self.vcpus = vcpus
        self.memory_gib = memory_gib
        self.price = price
        self.spot_price = spot_price

    def hourly(self, spot: bool) -> float | None:
        return self.spot_price if spot else self.price

    def __repr__(self) -> str:
        return (f"Offer({self.cloud}/{self.region}/{self.zone} {self.instance_type} "
                f"{self.accelerator}:{self.count} od={self.price} spot={self.spot_price})")


@dataclass
class Catalog:
    offers: list[Offer]
    source: str
    as_of: str | None
    warnings: list[str] = field(default_factory=list)
    _index: dict | None = None

    def by_accelerator(self) -> dict[tuple[str, int], list[Offer]]:
        """Offers keyed by (lower-case accelerator name, count), each list sorted by
        (cloud, region, zone, instance type): the planner's stable price sort then breaks
        ties in that order, deterministically, for free."""
        if self._index is None:
            idx: dict = {}
            for o in self.offers:
                idx.setdefault((o.accelerator.lower(), o.count), []).append(o)
            for offers in idx.values():
                offers.sort(key=_tie_key)
            self._index = idx
        return self._index

    def accelerator_names(self) -> dict[str, str]:
        return {o.accelerator.lower(): o.accelerator for o in self.offers}

    def age_days(self, today: dt.date | None = None) -> int | None:
        if not self.as_of:
            return None
        today = today or dt.datetime.now(dt.timezone.utc).date()
        return (today - dt.date.fromisoformat(self.as_of)).days


def _tie_key(o: Offer) -> tuple:
    return (o.cloud, o.region, o.zone or "", o.instance_type, o.accelerator)


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


# ---------------------------------------------------------------- parsing

_DATE_RE = re.compile(r"(?:taken on|as of|as_of|snapshot)\D{0,5}(\d{4}-\d{2}-\d{2})", re.I)


def _declared_date(d: Path) -> str | None:
    for folder in (d, d.parent):
        for name in ("SOURCE.md", "README.md", "AS_OF"):
            f = folder / name
            if f.is_file():
                try:
                    text = f.read_text(encoding="utf-8", errors="replace")[:20000]
                except OSError:
                    continue
                m = _DATE_RE.search(text) or (re.search(r"\d{4}-\d{2}-\d{2}", text) if name == "AS_OF" else None)
                if m:
                    return m.group(1) if m.groups() else m.group(0)
    return None


def _num(raw: str, where: str, col: str, allow_empty=True) -> float | None:
    if raw == "" or raw is None:
        if allow_empty:
            return None
        raise InputError(f"{where}: field '{col}' is empty; it must be a number")
    try:
        v = float(raw)
    except ValueError:
        raise InputError(f"{where}: field '{col}' is '{raw[:40]}', not a number") from None
    if not math.isfinite(v):
        raise _NotFinite
    return v


class _NotFinite(Exception):
    """A numeric catalog field holds inf/nan (or overflows a float, like 1e400)."""


def _value(raw: str, where: str, col: str, allow_empty=True):
    """(value, bad): a non-finite number reads as missing and counts as one bad value."""
    try:
        return _num(raw, where, col, allow_empty), 0
    except _NotFinite:
        return None, 1


def _price(raw: str, where: str, col: str) -> tuple[float | None, int, int]:
    """(price or None, dropped as 0 or less, dropped as implausible). The hot path: one
    float() and one chained comparison for a good price."""
    if not raw:
        return None, 0, 0
    try:
        v = float(raw)
    except ValueError:
        raise InputError(f"{where}: field '{col}' is '{raw[:40]}', not a number") from None
    if PRICE_MIN <= v <= PRICE_MAX:  # false for nan too
        return v, 0, 0
    if v <= 0 and math.isfinite(v):
        return None, 1, 0
    return None, 0, 1


def load_dir(path: Path, label: str, clouds: tuple[str, ...] = (), oldest: bool = False) -> Catalog:
    merged: dict[tuple, Offer] = {}
    warnings: list[str] = []
    row_dates: list[str] = []
    mtimes: list[float] = []
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise InputError(f"catalog {label}: cannot read folder: {e.strerror}") from None
    for cloud in names:
        f = path / cloud / "vms.csv"
        if not f.is_file() or (clouds and cloud not in clouds):
            continue
        mtimes.append(f.stat().st_mtime)
        dropped, implausible = _read_cloud(cloud, f, merged, row_dates)
        if dropped:
            warnings.append(f"{cloud}: ignored {dropped} price(s) of 0 or less (not a real price)")
        if implausible:
            warnings.append(f"{f}: skipped {implausible} implausible value(s): prices that are not finite or "
                            f"outside ${PRICE_MIN:g}-${PRICE_MAX:,.0f} per instance-hour, or non-finite "
                            "vCPUs/MemoryGiB/AcceleratorCount; fix or remove those rows")
    as_of = (min(row_dates) if row_dates else None) or _declared_date(path)
    if as_of is None and mtimes:
        as_of = dt.datetime.fromtimestamp(min(mtimes) if oldest else max(mtimes), dt.timezone.utc).date().isoformat()
    offers = list(merged.values())
    return Catalog(offers=offers, source=label, as_of=as_of, warnings=warnings)


_REQUIRED = ("InstanceType", "AcceleratorName", "AcceleratorCount", "Price", "Region")


def _read_cloud(cloud: str, f: Path, merged: dict, row_dates: list) -> tuple[int, int]:
    display = f"{f.parent.name}/vms.csv"
    try:
        fh = open(f, newline="", encoding="utf-8")
    except OSError as e:
        raise InputError(f"catalog file {f}: cannot read: {e.strerror}") from None
    dropped = implausible = 0
    with fh:
        try:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return 0, 0
            col = {name.strip(): i for i, name in enumerate(header)}
            missing = [c for c in _REQUIRED if c not in col]
            if missing:
                raise InputError(f"catalog file {f}:1: missing column(s) {', '.join(missing)}; "
                                 f"expected SkyPilot's vms.csv schema (has: {', '.join(header)[:200]})")
            iI, iA, iC, iP, iR = (col[c] for c in _REQUIRED)
            iS = col.get("SpotPrice")
            iZ = col.get("AvailabilityZone")
            iV = col.get("vCPUs")
            iM = col.get("MemoryGiB")
            iD = col.get("AsOf")
            width = len(header)
            gcp = cloud == "gcp"
            hosts: dict = {}
            accs: list = []
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) < width:
                    raise InputError(f"catalog file {f}:{lineno}: row has {len(row)} fields, header has {width}")
                where = f"catalog file {display}:{lineno}"
                itype = row[iI]
                acc = row[iA]
                price, d1, b1 = _price(row[iP], where, "Price")
                spot, d2, b2 = _price(row[iS], where, "SpotPrice") if iS is not None else (None, 0, 0)
                dropped += d1 + d2
                implausible += b1 + b2
                if iD is not None and row[iD]:
                    row_dates.append(row[iD])
                region = row[iR]
                zone = row[iZ] if iZ is not None and row[iZ] else None
                vcpus, b1 = _value(row[iV], where, "vCPUs") if iV is not None else (None, 0)
                mem, b2 = _value(row[iM], where, "MemoryGiB") if iM is not None else (None, 0)
                implausible += b1 + b2
                if gcp:
                    if itype and not acc:
                        hosts.setdefault(zone or region, []).append((itype, vcpus, mem, price, spot, region))
                        continue
                    if not itype and acc:
                        cnt, b = _value(row[iC], where, "AcceleratorCount", allow_empty=False)
                        implausible += b
                        accs.append((acc, cnt, region, zone, price, spot))
                        continue
                if not acc or not itype:
                    continue  # CPU-only instance, or a row we cannot price alone
                cnt, b = _value(row[iC], where, "AcceleratorCount", allow_empty=False)
                implausible += b
                if cnt is None or cnt != int(cnt) or cnt < 1:
                    continue  # fractional GPUs are not offered by rayctl
                _add(merged, Offer(cloud, region, zone, itype, acc, int(cnt), vcpus, mem, price, spot))
            if gcp:
                _join_gcp(hosts, accs, merged)
        except csv.Error as e:
            raise InputError(f"catalog file {f}:{reader.line_num}: not valid CSV: {e}") from None
        except UnicodeDecodeError:
            raise InputError(f"catalog file {f}: is not UTF-8 text") from None
    return dropped, implausible


def _add(merged: dict, o: Offer) -> None:
    key = (o.cloud, o.instance_type, o.accelerator, o.count, o.region, o.zone)
    old = merged.get(key)
    if old is None:
        merged[key] = o
        return
    old.price = _min(old.price, o.price)
    old.spot_price = _min(old.spot_price, o.spot_price)


def _min(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _sum(a, b):
    return None if a is None or b is None else round(a + b, 6)


def _join_gcp(hosts: dict, accs: list, merged: dict) -> None:
    for acc, cnt, region, zone, price, spot in accs:
        if cnt is None or cnt != int(cnt) or cnt < 1 or acc.lower().startswith("tpu"):
            continue
        n = int(cnt)
        table = GCP_HOSTS.get(acc)
        candidates = hosts.get(zone or region, ())
        if table is not None:
            allowed = table.get(n)
            if not allowed:
                continue
            chosen = [h for h in candidates if h[0] in allowed]
        else:
            need = _GCP_N1_CPUS.get(acc, _GCP_N1_CPUS["DEFAULT"]).get(n)
            if need is None:
                continue
            chosen = [h for h in candidates if h[0].startswith("n1-") and (h[1] or 0) >= need
                      and (h[2] or 0) >= 4 * need]
        for itype, vcpus, mem, hprice, hspot, hregion in chosen:
            _add(merged, Offer("gcp", region, zone, itype, acc, n, vcpus, mem,
                               _sum(hprice, price), _sum(hspot, spot)))


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
        a["od"] = _min(a["od"], _per_gpu(o.price, o.count))
        a["spot"] = _min(a["spot"], _per_gpu(o.spot_price, o.count))
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
