"""Reading price data in SkyPilot's catalog layout (`<cloud>/vms.csv`) into a `Catalog`.

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
from pathlib import Path

from .offers import Catalog, Offer, lower_price
from ..errors import InputError

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


# ---------------------------------------------------------------- parsing

_DATE_RE = re.compile(r"(?:taken on|as of|as_of|snapshot)\D{0,5}(\d{4}-\d{2}-\d{2})", re.I)


def declared_date(d: Path) -> str | None:
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
    """Every `<cloud>/vms.csv` of one folder (an explicit --catalog or a whole source)."""
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise InputError(f"catalog {label}: cannot read folder: {e.strerror}") from None
    files = [(c, path / c / "vms.csv") for c in names if not clouds or c in clouds]
    merged, warnings, dated = _read_files([(c, f) for c, f in files if f.is_file()])
    row_dates = [r for r, _ in dated if r]
    mtimes = [m for _, m in dated]
    as_of = (min(row_dates) if row_dates else None) or declared_date(path)
    if as_of is None and mtimes:
        as_of = _day(min(mtimes) if oldest else max(mtimes))
    return Catalog(offers=list(merged.values()), source=label, as_of=as_of, warnings=warnings)


def load_files(chosen: list[tuple[str, Path, str, str | None]], label: str) -> Catalog:
    """One file per cloud, each from its own source: (cloud, vms.csv, source label, the
    source folder's declared date). Each file is dated by its rows' AsOf, else the folder's
    declared date, else its modification day; the catalog by the OLDEST file, so stale
    warnings still fire when one cloud's data is old."""
    merged, warnings, dated = _read_files([(c, f) for c, f, _, _ in chosen])
    sources: dict = {}
    for (cloud, f, src, declared), (row_min, mtime) in zip(chosen, dated):
        sources[cloud] = {"source": src, "file": str(f), "as_of": row_min or declared or _day(mtime)}
    days = [s["as_of"] for s in sources.values()]
    return Catalog(offers=list(merged.values()), source=label, as_of=min(days) if days else None,
                   warnings=warnings, sources=sources)


def _day(mtime: float) -> str:
    return dt.datetime.fromtimestamp(mtime, dt.timezone.utc).date().isoformat()


def _read_files(files: list[tuple[str, Path]]) -> tuple[dict, list[str], list[tuple[str | None, float]]]:
    """(merged offers, warnings, per file: (its oldest row AsOf or None, its mtime))."""
    merged: dict[tuple, Offer] = {}
    warnings: list[str] = []
    dated: list[tuple[str | None, float]] = []
    for cloud, f in files:
        try:
            mtime = f.stat().st_mtime
        except OSError as e:
            raise InputError(f"catalog file {f}: cannot read: {e.strerror}") from None
        row_dates: list[str] = []
        dropped, implausible = _read_cloud(cloud, f, merged, row_dates)
        dated.append((min(row_dates) if row_dates else None, mtime))
        if dropped:
            warnings.append(f"{cloud}: ignored {dropped} price(s) of 0 or less (not a real price)")
        if implausible:
            warnings.append(f"{f}: skipped {implausible} implausible value(s): prices that are not finite or "
                            f"outside ${PRICE_MIN:g}-${PRICE_MAX:,.0f} per instance-hour, or non-finite "
                            "vCPUs/MemoryGiB/AcceleratorCount; fix or remove those rows")
    return merged, warnings, dated


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
    old.price = lower_price(old.price, o.price)
    old.spot_price = lower_price(old.spot_price, o.spot_price)


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
