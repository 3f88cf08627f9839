"""`rayctl pricing refresh`'s catalog download: SkyPilot's hosted catalog, no credentials.

SkyPilot fetches `<cloud>/vms.csv` from `HOSTED_CATALOG_DIR_URL/v8/` (sky/skylet/constants.py,
sky/catalog/common.py `read_catalog`). rayctl fetches the same files for every cloud whose
file lists GPUs and SkyPilot can launch on, into `$RAYCTL_HOME/catalog/v8/<cloud>/vms.csv`,
which the planner prefers, per cloud, over SkyPilot's own cache file when it is newer (see `catalog.resolve`).

- Base URL: `$RAYCTL_SKYPILOT_CATALOG_URL` when set (tests point it at a local server),
  else the value of `HOSTED_CATALOG_DIR_URL` in the installed SkyPilot's
  `sky/skylet/constants.py` (read from the file, not imported: `import sky` takes seconds
  and creates ~/.sky), else the same URL as a constant here.
- Each file must arrive whole within `timeout_s` (connect, headers and body); files are
  fetched by a few threads at once and the whole refresh ends after
  `timeout_s x ceil(files / workers) + 5` seconds whatever happens.
- A file is kept only when it is complete (Content-Length), UTF-8, SkyPilot's vms.csv
  schema, parses with the planner's own reader, and has GPU rows. Kept: its GPU rows (and
  GCP's host rows, since a GCP offer is host + accelerator), all columns, written
  atomically. Anything else keeps the last good copy and is reported by cloud.
- `meta.json` beside `v8/` records per cloud when it was fetched, the last attempt, rows,
  URL and the last error.

Standard library only (urllib, csv, threads).
"""

from __future__ import annotations

import ast
import csv
import datetime as dt
import gzip
import io
import json
import math
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

# sky.skylet.constants.HOSTED_CATALOG_DIR_URL in SkyPilot 0.14.1.
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs"
SCHEMA = "v8"
ENV_URL = "RAYCTL_SKYPILOT_CATALOG_URL"
# Clouds with a `v8/<cloud>/vms.csv` upstream that lists GPUs and that SkyPilot 0.14.1 reads
# (sky/catalog/<cloud>_catalog.py). Upstream has no v8 Azure file.
CLOUDS = ("aws", "cudo", "gcp", "hyperbolic", "lambda", "mithril", "nebius", "oci", "primeintellect", "runpod",
          "seeweb", "shadeform", "vast", "verda", "yotta")
WORKERS = 6
MAX_BYTES = 200 * 1024 * 1024
# GCP host VM families GPUs attach to (their rows have an empty AcceleratorName).
_GCP_HOST_PREFIXES = ("a2-", "a3-", "a4-", "g2-", "g4-", "n1-")


def catalog_dir() -> Path:
    from ..catalog import refreshed_dir

    return refreshed_dir()


def meta_path(d: Path | None = None) -> Path:
    return (d or catalog_dir()).parent / "meta.json"


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def base_url() -> tuple[str, str]:
    """(base URL, where it came from)."""
    env = os.environ.get(ENV_URL)
    if env:
        return env.rstrip("/"), f"${ENV_URL}"
    url = _skypilot_constant()
    if url:
        return url.rstrip("/"), "sky.skylet.constants.HOSTED_CATALOG_DIR_URL"
    return DEFAULT_BASE_URL, "rayctl default (SkyPilot not installed)"


def _skypilot_constant() -> str | None:
    """HOSTED_CATALOG_DIR_URL from the installed SkyPilot's constants.py, without importing sky."""
    try:
        import importlib.util
        import sys

        mod = sys.modules.get("sky.skylet.constants")
        if mod is not None:
            return getattr(mod, "HOSTED_CATALOG_DIR_URL", None)
        spec = importlib.util.find_spec("sky")  # top-level: finds the package, runs nothing
        if spec is None or not spec.submodule_search_locations:
            return None
        for loc in spec.submodule_search_locations:
            f = Path(loc) / "skylet" / "constants.py"
            if f.is_file():
                tree = ast.parse(f.read_text(encoding="utf-8"))
                for node in tree.body:
                    if isinstance(node, ast.Assign) and any(
                            isinstance(t, ast.Name) and t.id == "HOSTED_CATALOG_DIR_URL" for t in node.targets):
                        v = ast.literal_eval(node.value)
                        return v if isinstance(v, str) and v.startswith(("http://", "https://")) else None
    except Exception:  # any surprise: fall back to the constant
        return None
    return None


class FetchError(Exception):
    pass


def _download(url: str, timeout_s: float, deadline: float) -> bytes:
    end = min(time.monotonic() + timeout_s, deadline)
    req = urllib.request.Request(url, headers={"User-Agent": "rayctl", "Accept-Encoding": "gzip"})
    try:
        with urllib.request.urlopen(req, timeout=max(0.1, min(timeout_s, end - time.monotonic()))) as resp:
            length = resp.headers.get("Content-Length")
            chunks, n = [], 0
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise FetchError(f"timed out after {timeout_s:g} s ({n} bytes received)")
                try:
                    resp.fp.raw._sock.settimeout(left)  # type: ignore[union-attr]
                except AttributeError:
                    pass
                b = resp.read1(1 << 16)  # one recv: a server trickling bytes cannot outlast `end`
                if not b:
                    break
                n += len(b)
                if n > MAX_BYTES:
                    raise FetchError(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
                chunks.append(b)
            if length is not None and length.isdigit() and n != int(length):
                raise FetchError(f"connection closed after {n} of {length} bytes")
            body = b"".join(chunks)
            if (resp.headers.get("Content-Encoding") or "").lower() == "gzip":
                try:
                    body = gzip.decompress(body)
                except (OSError, EOFError) as e:
                    raise FetchError(f"bad gzip data: {e}") from None
            return body
    except urllib.error.HTTPError as e:
        raise FetchError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        r = e.reason
        if isinstance(r, TimeoutError) or "timed out" in str(r):
            raise FetchError(f"timed out after {timeout_s:g} s") from None
        raise FetchError(f"cannot connect: {r}") from None
    except TimeoutError:
        raise FetchError(f"timed out after {timeout_s:g} s") from None
    except (OSError, ValueError) as e:  # reset, incomplete read, bad URL
        raise FetchError(f"{type(e).__name__}: {e}") from None


def _keep(cloud: str, row: list, iI: int, iA: int) -> bool:
    if row[iA].strip():
        return True
    return cloud == "gcp" and row[iI].startswith(_GCP_HOST_PREFIXES)


def _install(cloud: str, body: bytes, dest: Path, cancelled: threading.Event) -> int:
    """Check a downloaded vms.csv, then atomically replace `dest` with its GPU rows. Returns rows."""
    from ..catalog_csv import _REQUIRED, _read_cloud
    from ...errors import InputError

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("not UTF-8 text (not a SkyPilot catalog file)") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise FetchError(f"not valid CSV: {e}") from None
    if not rows:
        raise FetchError("empty file")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise FetchError(f"not SkyPilot's vms.csv schema (missing column(s) {', '.join(missing)}; "
                         f"starts {text[:60]!r})")
    iI, iA = header.index("InstanceType"), header.index("AcceleratorName")
    kept = [r for r in rows[1:] if r and len(r) > max(iI, iA) and _keep(cloud, r, iI, iA)]
    bad = next((i for i, r in enumerate(rows[1:], start=2) if r and len(r) < len(header)), None)
    if bad is not None:
        raise FetchError(f"line {bad} has {len(rows[bad - 1])} fields, the header {len(header)} (truncated?)")
    if not any(r[iA].strip() for r in kept):
        raise FetchError("no GPU rows")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".vms.csv.tmp{os.getpid()}.{threading.get_ident()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(rows[0])
            w.writerows(kept)
        try:
            _read_cloud(cloud, tmp, {}, [])  # exactly what the planner will read
        except InputError as e:
            raise FetchError(e.message.replace(str(tmp), f"{cloud}/vms.csv")) from None
        if cancelled.is_set():
            raise FetchError("the whole refresh ran out of time")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(kept)


def refresh(clouds: tuple[str, ...] | list[str] | None = None, *, timeout_s: float = 20.0,
            d: Path | None = None, workers: int = WORKERS) -> dict:
    """Download each cloud's vms.csv into `d` (default `$RAYCTL_HOME/catalog/v8`).

    Returns {"base_url", "url_from", "dir", "ok", "clouds": {cloud: {"ok", "rows", "url",
    "error"}}, "failed": [...]}; "ok" is True only when every file was refreshed."""
    d = d or catalog_dir()
    clouds = list(clouds or CLOUDS)
    base, url_from = base_url()
    n_workers = max(1, min(workers, len(clouds)))
    limit = timeout_s * math.ceil(len(clouds) / n_workers) + 5
    deadline = time.monotonic() + limit
    cancelled = threading.Event()
    todo: queue.Queue = queue.Queue()
    for c in clouds:
        todo.put(c)
    done: queue.Queue = queue.Queue()

    def work():
        while True:
            try:
                c = todo.get_nowait()
            except queue.Empty:
                return
            url = f"{base}/{SCHEMA}/{c}/vms.csv"
            try:
                if time.monotonic() >= deadline or cancelled.is_set():
                    raise FetchError("the whole refresh ran out of time")
                body = _download(url, timeout_s, deadline)
                rows = _install(c, body, d / c / "vms.csv", cancelled)
                done.put((c, {"ok": True, "rows": rows, "url": url, "error": None}))
            except FetchError as e:
                done.put((c, {"ok": False, "rows": None, "url": url, "error": str(e)[:300]}))
            except Exception as e:  # never let one file take the command down
                done.put((c, {"ok": False, "rows": None, "url": url, "error": f"{type(e).__name__}: {e}"[:300]}))

    for _ in range(n_workers):
        threading.Thread(target=work, name="rayctl-catalog-fetch", daemon=True).start()
    results: dict = {}
    while len(results) < len(clouds):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            c, r = done.get(timeout=left)
        except queue.Empty:
            break
        results[c] = r
    cancelled.set()
    for c in clouds:
        results.setdefault(c, {"ok": False, "rows": None, "url": f"{base}/{SCHEMA}/{c}/vms.csv",
                               "error": f"not complete when the whole refresh's {limit:g} s limit ran out"})
    _record(d, base, results)
    ordered = {c: results[c] for c in clouds}
    failed = [c for c, r in ordered.items() if not r["ok"]]
    return {"base_url": base, "url_from": url_from, "dir": str(d), "ok": not failed, "clouds": ordered,
            "failed": failed, "limit_s": limit}


def read_meta(d: Path | None = None) -> dict:
    try:
        m = json.loads(meta_path(d).read_text(encoding="utf-8"))
        return m if isinstance(m, dict) else {}
    except (OSError, ValueError):
        return {}


def _record(d: Path, base: str, results: dict) -> None:
    meta = read_meta(d)
    clouds = meta.get("clouds") if isinstance(meta.get("clouds"), dict) else {}
    now = _now_iso()
    for c, r in results.items():
        m = dict(clouds.get(c) or {})
        m["attempted_at"] = now
        m["url"] = r["url"]
        m["error"] = r["error"]
        if r["ok"]:
            m["fetched_at"] = now
            m["rows"] = r["rows"]
        clouds[c] = m
    meta = {"base_url": base, "clouds": clouds}
    p = meta_path(d)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".meta.json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, p)
    except OSError as e:
        from ...errors import InputError

        raise InputError(f"pricing refresh: cannot write {p}: {e.strerror} (check $RAYCTL_HOME)") from None
