"""`rayctl pricing refresh` against a real local HTTP server, the source order, the shipped snapshot.

No network: a `http.server` in a thread on 127.0.0.1 serves a catalog tree in SkyPilot's hosted
layout (`BASE/v8/<cloud>/vms.csv`) and $RAYCTL_SKYPILOT_CATALOG_URL points rayctl at it. Each
failure mode (404, server stopped mid-refresh, timeout, garbage) must keep the last good copy.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rayctl.planning import catalog as catalog_mod
from rayctl.planning.refresh import hosted
from tests.conftest import REPO, assert_no_traceback

pytestmark = pytest.mark.timeout(180)

V8 = ("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,"
      "AvailabilityZone,Arch\n")
GCP_V8 = ("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,"
          "AvailabilityZone,Arch\n")


def tree(gen: int) -> dict[str, str]:
    """One vms.csv per cloud refreshed; prices carry `gen` so each refresh is recognisable."""
    files = {}
    for i, c in enumerate(hosted.CLOUDS):
        if c == "gcp":
            files[c] = GCP_V8 + (
                f"a3-highgpu-8g,,,208,1872,,{30 + gen}.0,{8 + gen}.0,us-central1,us-central1-a,x86_64\n"
                f",H100,8,,,,{60 + gen}.0,{20 + gen}.0,us-central1,us-central1-a,x86_64\n"
                "e2-standard-2,,,2,8,,0.07,0.02,us-central1,us-central1-a,x86_64\n")
        else:
            files[c] = V8 + (
                f"{c}-h100x8,H100,8.0,192.0,2048.0,,{40 + i + gen}.00,{30 + i + gen}.00,r-{c},,x86_64\n"
                f"{c}-cpu,,,2.0,8.0,,0.10,0.04,r-{c},,x86_64\n")
    return files


class CatalogServer:
    """A real HTTP server on 127.0.0.1; `modes[cloud]` makes one file misbehave."""

    def __init__(self, files: dict[str, str]):
        self.files = dict(files)
        self.modes: dict[str, str] = {}
        self.hits: list[str] = []
        srv = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def handle(self):
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): expected here

            def do_GET(self):
                parts = self.path.strip("/").split("/")
                srv.hits.append(self.path)
                if len(parts) != 3 or parts[0] != "v8" or parts[2] != "vms.csv" or parts[1] not in srv.files:
                    self.send_error(404)
                    return
                cloud = parts[1]
                body = srv.files[cloud].encode()
                mode = srv.modes.get(cloud)
                if mode == "404":
                    self.send_error(404)
                    return
                if mode == "garbage":
                    body = b"<html><body>rate limited</body></html>\n"
                if mode == "bad-number":
                    body = srv.files[cloud].replace(".00,", "x,", 1).encode()
                if mode == "hang":
                    time.sleep(6)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "trickle":
                    for b in body[:40]:
                        self.wfile.write(bytes([b]))
                        self.wfile.flush()
                        time.sleep(0.25)
                    return
                if mode == "stop":  # the server dies half-way through this file
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    threading.Thread(target=srv.stop).start()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.stopped = False

    def stop(self):
        if not self.stopped:
            self.stopped = True
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server():
    s = CatalogServer(tree(0))
    yield s
    s.stop()


def _snapshot(d: Path) -> dict[str, bytes]:
    return {c: (d / c / "vms.csv").read_bytes() for c in hosted.CLOUDS if (d / c / "vms.csv").is_file()}


def _refresh(cli, server, *extra):
    return cli("pricing", "refresh", "--source", "skypilot", *extra, env={"RAYCTL_SKYPILOT_CATALOG_URL": server.url})


def test_refresh_downloads_every_cloud_keeps_gpu_rows_and_the_planner_uses_it(cli, rayctl_home, server, tmp_path):
    r = _refresh(cli, server, "--json")
    assert r.code == 0, r
    doc = json.loads(r.out)
    cat = doc["catalog"]
    assert cat["ok"] and cat["failed"] == [] and cat["base_url"] == server.url
    assert cat["url_from"] == "$RAYCTL_SKYPILOT_CATALOG_URL"
    assert sorted(cat["clouds"]) == sorted(hosted.CLOUDS)
    assert {p.split("/")[2] for p in server.hits} == set(hosted.CLOUDS)
    assert all(p.startswith("/v8/") and p.endswith("/vms.csv") for p in server.hits)
    d = rayctl_home / "catalog" / "v8"
    aws = (d / "aws" / "vms.csv").read_text()
    assert "aws-h100x8" in aws and "aws-cpu" not in aws      # CPU-only rows dropped
    gcp = (d / "gcp" / "vms.csv").read_text()
    assert "a3-highgpu-8g" in gcp and ",H100,8" in gcp and "e2-standard-2" not in gcp  # host + GPU rows kept
    assert cat["clouds"]["gcp"]["rows"] == 2 and cat["clouds"]["aws"]["rows"] == 1
    assert not [p for p in d.rglob("*") if ".tmp" in p.name]
    # the planner now reads it (newer than any SkyPilot cache; there is none here)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nkind: train\nresources: {accelerators: H100:8, spot: true}\n")
    p = cli("plan", recipe, "--json")
    assert p.code == 0, p
    plan = json.loads(p.out)
    assert plan["catalog"]["source"] == f"rayctl-refreshed:{d}"
    assert plan["catalog"]["as_of"] == dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert plan["chosen"]["cloud"] == "gcp" and plan["chosen"]["hourly_usd"] == 28.0  # host 8 + GPUs 20, spot
    assert "days old" not in p.err
    # status: per cloud source, rows, age
    s = cli("pricing", "status", "--json")
    assert s.code == 0, s
    st = json.loads(s.out)
    assert st["source"] == f"rayctl-refreshed:{d}"
    assert st["clouds"]["gcp"]["rows"] == 2 and st["clouds"]["gcp"]["age_days"] == 0
    assert st["clouds"]["aws"]["last_refresh"]["error"] is None and st["clouds"]["aws"]["last_refresh"]["fetched_at"]
    s = cli("pricing", "status")
    assert s.code == 0 and "rayctl-refreshed" in s.out and "lambda" in s.out


def test_one_file_404_keeps_its_last_good_copy_and_names_it(cli, rayctl_home, server):
    assert _refresh(cli, server).code == 0
    d = rayctl_home / "catalog" / "v8"
    before = _snapshot(d)
    server.files = tree(1)
    server.modes["lambda"] = "404"
    r = _refresh(cli, server)
    assert r.code == 1, r
    assert_no_traceback(r)
    assert "lambda/vms.csv failed: HTTP 404" in r.err and "kept the last good copy" in r.err
    assert "pricing refresh failed for: lambda" in r.err
    after = _snapshot(d)
    assert after["lambda"] == before["lambda"]                       # last good copy survives
    assert after["aws"] != before["aws"] and b"aws-h100x8" in after["aws"]  # the others are new
    meta = hosted.read_meta(d)["clouds"]
    assert "HTTP 404" in meta["lambda"]["error"] and meta["lambda"]["fetched_at"] and meta["lambda"]["rows"] == 1
    assert meta["aws"]["error"] is None
    st = json.loads(cli("pricing", "status", "--json").out)
    assert "HTTP 404" in st["clouds"]["lambda"]["last_refresh"]["error"]


def test_server_stopped_mid_refresh_keeps_every_last_good_copy(cli, rayctl_home, server):
    assert _refresh(cli, server).code == 0
    d = rayctl_home / "catalog" / "v8"
    before = _snapshot(d)
    server.files = tree(1)
    for c in hosted.CLOUDS:
        server.modes[c] = "stop"  # whichever file is asked first kills the server half-way
    t = time.monotonic()
    r = _refresh(cli, server, "--timeout", "3")
    assert r.code == 1, r
    assert_no_traceback(r)
    assert time.monotonic() - t < 60
    assert server.stopped
    assert _snapshot(d) == before
    assert "connection closed after" in r.err or "cannot connect" in r.err or "Error" in r.err
    assert not [p for p in d.rglob("*") if ".tmp" in p.name]


def test_timeout_per_file_and_the_whole_refresh_is_bounded(cli, rayctl_home, server):
    assert _refresh(cli, server).code == 0
    d = rayctl_home / "catalog" / "v8"
    before = _snapshot(d)
    server.files = tree(1)
    server.modes.update({"aws": "hang", "gcp": "trickle"})
    t = time.monotonic()
    r = _refresh(cli, server, "--timeout", "1")
    took = time.monotonic() - t
    assert r.code == 1, r
    assert took < 20, took
    assert "aws/vms.csv failed: timed out after 1 s" in r.err
    assert "gcp/vms.csv failed: timed out after 1 s" in r.err
    after = _snapshot(d)
    assert after["aws"] == before["aws"] and after["gcp"] == before["gcp"]
    assert after["lambda"] != before["lambda"]


@pytest.mark.parametrize("mode,needle", [
    ("garbage", "not SkyPilot's vms.csv schema"),
    ("bad-number", "not a number"),
])
def test_garbage_csv_keeps_the_last_good_copy(cli, rayctl_home, server, mode, needle):
    assert _refresh(cli, server).code == 0
    d = rayctl_home / "catalog" / "v8"
    before = _snapshot(d)
    server.files = tree(1)
    server.modes["runpod"] = mode
    r = _refresh(cli, server)
    assert r.code == 1, r
    assert_no_traceback(r)
    assert "runpod/vms.csv failed" in r.err and needle in r.err, r.err
    assert _snapshot(d)["runpod"] == before["runpod"]


def test_first_refresh_failure_leaves_no_file_and_planning_still_works(cli, rayctl_home, server, tmp_path):
    server.modes["vast"] = "garbage"
    r = _refresh(cli, server)
    assert r.code == 1 and "kept the last good copy; there is none" in r.err
    assert not (rayctl_home / "catalog" / "v8" / "vast").exists()


def test_bare_refresh_without_credentials_exits_0_and_notes_the_skipped_overlays(cli, server, tmp_path):
    env = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "GOOGLE_APPLICATION_CREDENTIALS")}
    env.update(RAYCTL_SKYPILOT_CATALOG_URL=server.url, AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), CLOUDSDK_CONFIG=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    r = cli("pricing", "refresh", env=env)
    assert r.code == 0, r
    assert "catalog: 15 of 15 cloud file(s) refreshed" in r.out
    assert "aws: live overlay skipped: no usable credentials" in r.out
    assert "gcp: live overlay skipped: no usable credentials" in r.out
    # --cloud keeps its meaning: that overlay only, and it needs credentials
    r = cli("pricing", "refresh", "--cloud", "aws", env=env)
    assert r.code == 2 and "no usable credentials for aws" in r.err
    r = cli("pricing", "refresh", "--cloud", "aws", "--source", "skypilot", env=env)
    assert r.code == 2 and "pass one of them" in r.err
    r = cli("pricing", "refresh", "--source", "azure", env=env)
    assert r.code == 2 and "--source azure" in r.err


def test_base_url_comes_from_skypilot_without_importing_it(monkeypatch):
    import sys

    monkeypatch.delenv("RAYCTL_SKYPILOT_CATALOG_URL", raising=False)
    had = "sky" in sys.modules
    url, where = hosted.base_url()
    try:
        import importlib.util

        installed = importlib.util.find_spec("sky") is not None
    except ValueError:
        installed = False
    if installed:
        assert where == "sky.skylet.constants.HOSTED_CATALOG_DIR_URL"
    assert url == hosted.DEFAULT_BASE_URL  # SkyPilot 0.14.1's value
    assert ("sky" in sys.modules) == had
    monkeypatch.setenv("RAYCTL_SKYPILOT_CATALOG_URL", "http://127.0.0.1:9/base/")
    assert hosted.base_url() == ("http://127.0.0.1:9/base", "$RAYCTL_SKYPILOT_CATALOG_URL")


# ------------------------------------------------------------------ source order


def _write_cloud(root: Path, cloud: str, text: str, mtime: float | None = None) -> Path:
    f = root / cloud / "vms.csv"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)
    if mtime is not None:
        os.utime(f, (mtime, mtime))
    return f


def test_source_order(cli, rayctl_home, tmp_path):
    recipe = tmp_path / "r.yaml"  # aws only: the other clouds' shipped offers are cheaper
    recipe.write_text("name: r\nkind: train\nresources: {accelerators: H100:8, clouds: [aws]}\n")
    home = tmp_path / "home"
    sky = home / ".sky" / "catalogs" / "v8"
    ours = rayctl_home / "catalog" / "v8"
    mine = tmp_path / "mine"
    now = time.time()
    _write_cloud(mine, "aws", V8 + "p5.48xlarge,H100,8,192,2048,,50.0,,us-east-1,use1-az1,x86_64\n")

    def source(**env):
        r = cli("plan", recipe, "--json", env={"HOME": str(home), **env})
        assert r.code == 0, r
        return json.loads(r.out)["catalog"]["source"], json.loads(r.out)["chosen"]["hourly_usd"]

    # 1. nothing: the shipped snapshot
    assert source()[0] == "rayctl-shipped:pricing"
    # 2. SkyPilot's cache (aws only): aws from it, every other cloud still from the snapshot
    _write_cloud(sky, "aws", V8 + "p5.48xlarge,H100,8,192,2048,,31.0,,us-east-1,use1-az1,x86_64\n", now - 3600)
    assert source() == ("auto: aws from skypilot-cache:~/.sky/catalogs/v8; 10 clouds from rayctl-shipped:pricing",
                        31.0)
    # 3. rayctl's refreshed aws file, newer than the cache's, wins ...
    _write_cloud(ours, "aws", V8 + "p5.48xlarge,H100,8,192,2048,,32.0,,us-east-1,use1-az1,x86_64\n", now - 60)
    assert source() == (f"auto: aws from rayctl-refreshed:{ours}; 10 clouds from rayctl-shipped:pricing", 32.0)
    # ... and loses once SkyPilot has refreshed its cache after it
    os.utime(sky / "aws" / "vms.csv", (now, now))
    assert source()[1] == 31.0
    # 4. $RAYCTL_CATALOG beats both; 5. --catalog beats everything
    assert source(RAYCTL_CATALOG=str(mine)) == (str(mine), 50.0)
    r = cli("plan", recipe, "--json", "--catalog", str(ours), env={"HOME": str(home), "RAYCTL_CATALOG": str(mine)})
    assert json.loads(r.out)["catalog"]["source"] == str(ours)


def test_refreshed_catalog_is_dated_by_its_oldest_file_and_warns_once(cli, rayctl_home, tmp_path):
    ours = rayctl_home / "catalog" / "v8"
    old = time.time() - 30 * 86400
    _write_cloud(ours, "aws", V8 + "p5.48xlarge,H100,8,192,2048,,32.0,5.0,us-east-1,use1-az1,x86_64\n")
    _write_cloud(ours, "lambda", V8 + "gpu_8x_h100,H100,8,208,1800,,24.0,,us-east-1,,x86_64\n", old)
    r1, r2 = tmp_path / "a.yaml", tmp_path / "b.yaml"
    r1.write_text("name: a\nkind: train\nresources: {accelerators: H100:8}\n")
    r2.write_text("name: b\nkind: train\nresources: {accelerators: H100:8, spot: true}\n")
    r = cli("plan", r1, r2, "--json")
    assert r.code == 0, r
    doc = json.loads(r.out)
    old_day = dt.datetime.fromtimestamp(old, dt.timezone.utc).date().isoformat()
    assert doc["plans"][0]["catalog"]["as_of"] == old_day
    assert r.err.count("days old") == 1 and "rayctl pricing refresh" in r.err  # once per command
    g = cli("gpus", "H100", "--json")
    assert g.code == 0 and g.err.count("days old") == 1
    assert json.loads(g.out)["catalog"]["as_of"] == old_day


SHIPPED_CLOUDS = sorted(p.parent.name for p in (REPO / "pricing").glob("*/vms.csv"))


def test_a_skypilot_cache_with_one_cloud_does_not_hide_the_shipped_clouds(cli, rayctl_home, tmp_path):
    """Issue 11: SkyPilot caches only the clouds it has used; the others come from the snapshot."""
    home = tmp_path / "home"
    sky = home / ".sky" / "catalogs" / "v8"
    _write_cloud(sky, "aws", V8 + "p4d.24xlarge,A100,8,96,1152,,9.5,,us-east-1,use1-az1,x86_64\n")
    env = {"HOME": str(home)}
    base = cli("plan", REPO / "recipes" / "batch-infer.yaml", "--json", "--catalog", str(REPO / "pricing"))
    p = cli("plan", REPO / "recipes" / "batch-infer.yaml", "--json", env=env)
    assert p.code == 0 and base.code == 0, (p, base)
    plan, shipped = json.loads(p.out), json.loads(base.out)
    cat = plan["catalog"]
    assert cat["source"] == "auto: aws from skypilot-cache:~/.sky/catalogs/v8; 10 clouds from rayctl-shipped:pricing"
    assert cat["as_of"] == "2026-11-25"  # the oldest chosen file: stale warnings still fire
    assert sorted(cat["sources"]) == SHIPPED_CLOUDS
    assert cat["sources"]["aws"]["source"] == "skypilot-cache:~/.sky/catalogs/v8"
    assert all(v["source"] == "rayctl-shipped:pricing" for c, v in cat["sources"].items() if c != "aws")
    clouds = {c["cloud"] for c in plan["candidates"]}
    assert clouds == {c["cloud"] for c in shipped["candidates"]} - {"aws"} and len(clouds) > 3
    # the L4 batch-infer recipe: aws offers come only from the cache (which has no L4 row)
    assert not [c for c in plan["candidates"] if c["cloud"] == "aws"]
    assert len(plan["candidates"]) == len([c for c in shipped["candidates"] if c["cloud"] != "aws"])
    g = cli("gpus", "--json", env=env)
    assert g.code == 0, g
    rows = {r["accelerator"]: r for r in json.loads(g.out)["accelerators"]}
    assert rows["A100"]["clouds"] != ["aws"] and "aws" in rows["A100"]["clouds"] and "gcp" in rows["L4"]["clouds"]
    assert sorted(json.loads(g.out)["catalog"]["sources"]) == SHIPPED_CLOUDS
    a100 = json.loads(cli("gpus", "A100", "--count", "8", "--json", env=env).out)["offers"]
    assert [(o["instance_type"], o["hourly_usd"]) for o in a100 if o["cloud"] == "aws"] == [("p4d.24xlarge", 9.5)]


def test_refreshed_and_skypilot_files_are_chosen_per_cloud(cli, rayctl_home, tmp_path):
    """A refresh holding aws and gcp + a newer SkyPilot cache holding aws: aws from the cache,
    gcp from the refresh, the rest from the snapshot; `pricing status` names each cloud's source."""
    home = tmp_path / "home"
    sky = home / ".sky" / "catalogs" / "v8"
    ours = rayctl_home / "catalog" / "v8"
    now = time.time()
    old = now - 20 * 86400
    _write_cloud(ours, "aws", V8 + "p5.48xlarge,H100,8,192,2048,,40.0,,us-east-1,use1-az1,x86_64\n", old)
    _write_cloud(ours, "gcp", GCP_V8 + "a3-highgpu-8g,,,208,1872,,8.0,4.0,us-central1,us-central1-a,x86_64\n"
                 ",H100,8,,,,22.0,11.0,us-central1,us-central1-a,x86_64\n", now - 7200)
    _write_cloud(sky, "aws", V8 + "p5.48xlarge,H100,8,192,2048,,31.0,,us-east-1,use1-az1,x86_64\n", now - 3600)
    env = {"HOME": str(home)}
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nkind: train\nresources: {accelerators: H100:8, clouds: [aws, gcp]}\n")
    p = cli("plan", recipe, "--json", "--top", "50", env=env)
    assert p.code == 0, p
    cat = json.loads(p.out)["catalog"]
    assert cat["source"] == (f"auto: aws from skypilot-cache:~/.sky/catalogs/v8; gcp from rayctl-refreshed:{ours}; "
                             "9 clouds from rayctl-shipped:pricing")
    assert cat["sources"]["aws"]["source"] == "skypilot-cache:~/.sky/catalogs/v8"
    assert cat["sources"]["gcp"]["source"] == f"rayctl-refreshed:{ours}"
    assert cat["sources"]["lambda"]["source"] == "rayctl-shipped:pricing"
    prices = {(c["cloud"], c["hourly_usd"]) for c in json.loads(p.out)["candidates"]}
    assert prices == {("aws", 31.0), ("gcp", 30.0)}  # not the refresh's older aws 40.0, not the snapshot's
    # pricing status: per cloud source and file
    s = cli("pricing", "status", "--json", env=env)
    assert s.code == 0, s
    st = json.loads(s.out)
    assert st["source"] == cat["source"] and st["as_of"] == "2026-11-25"
    assert sorted(st["clouds"]) == SHIPPED_CLOUDS
    assert st["clouds"]["aws"]["source"] == "skypilot-cache:~/.sky/catalogs/v8"
    assert st["clouds"]["aws"]["file"] == str(sky / "aws" / "vms.csv")
    assert st["clouds"]["gcp"]["source"] == f"rayctl-refreshed:{ours}" and st["clouds"]["gcp"]["rows"] == 2
    assert st["clouds"]["vast"]["source"] == "rayctl-shipped:pricing"
    assert st["clouds"]["vast"]["file"] == str(REPO / "pricing" / "vast" / "vms.csv")
    t = cli("pricing", "status", env=env)
    assert t.code == 0 and "skypilot-cache" in t.out and "rayctl-refreshed" in t.out and "vast" in t.out
    # an explicit --catalog stays one whole folder, with no per-cloud field
    e = cli("plan", recipe, "--json", "--catalog", str(ours), env=env)
    assert e.code == 0 and json.loads(e.out)["catalog"] == {"source": str(ours), "as_of": json.loads(e.out)["catalog"]["as_of"]}
    assert {c["hourly_usd"] for c in json.loads(e.out)["candidates"] if c["cloud"] == "aws"} == {40.0}


# ------------------------------------------------------------------ the shipped snapshot


def test_fresh_install_plans_spot_from_the_shipped_snapshot(cli, tmp_path):
    """A fresh RAYCTL_HOME and HOME, no catalog anywhere: real spot offers on several clouds."""
    g = cli("gpus", "H100", "--spot", "--json")
    assert g.code == 0, g
    doc = json.loads(g.out)
    assert doc["catalog"] == {"source": "rayctl-shipped:pricing", "as_of": "2026-11-25"}
    offers = doc["offers"]
    assert all(o["spot_hourly_usd"] for o in offers)
    assert len({o["cloud"] for o in offers}) >= 3, {o["cloud"] for o in offers}
    p = cli("plan", REPO / "recipes" / "batch-infer.yaml", "--json")
    assert p.code == 0, p
    plan = json.loads(p.out)
    assert plan["catalog"] == {"source": "rayctl-shipped:pricing", "as_of": "2026-11-25"}
    assert plan["chosen"]["spot"] is True and plan["chosen"]["accelerator"] == "L4"
    age = (dt.datetime.now(dt.timezone.utc).date() - dt.date(2026, 11, 25)).days
    assert ("days old" in p.err) == (age > catalog_mod.STALE_DAYS)
    assert p.err.count("days old") <= 1
    assert "ignored" not in p.err  # the snapshot carries no 0.00 "prices"


def test_shipped_snapshot_is_small_complete_and_sourced():
    d = catalog_mod.shipped_dir()
    files = sorted(d.glob("*/vms.csv"))
    assert sum(f.stat().st_size for f in files) < 400_000
    clouds = {f.parent.name for f in files}
    shared = REPO.parent / "shared" / "catalog" / "skypilot-v7"
    if shared.is_dir():  # every cloud of the data set that has GPU rows
        with_gpus = {c.name for c in shared.iterdir() if (c / "vms.csv").is_file()
                     and len((c / "vms.csv").read_text().splitlines()) > 1}
        assert clouds == with_gpus
    cat = catalog_mod.load_dir(d, "shipped")
    assert cat.as_of == "2026-11-25" and not cat.warnings
    have = {o.accelerator for o in cat.offers}
    assert {"A100", "A100-80GB", "H100", "H200", "L4", "L40S", "A10G"} <= have
    for acc in ("A100", "H100", "L4"):
        assert any(o.spot_price for o in cat.offers if o.accelerator == acc and o.cloud == "aws")
        assert any(o.price for o in cat.offers if o.accelerator == acc and o.cloud == "gcp")
    assert len({o.zone for o in cat.offers if o.cloud == "aws"}) > 20  # every zone, not one region
    readme = (d / "README.md").read_text()
    assert "skypilot-org/skypilot-catalog" in readme and "2026-11-25" in readme
    assert "001367d22a0033fac286a8c71aeac7109e431bcb" in readme  # the aws commit


def test_launch_target_cloud_warns_once_about_old_prices(cli, tmp_path):
    """The cloud launch path plans too; with old data it says so (once) before anything else fails."""
    old = tmp_path / "old"
    _write_cloud(old, "aws", V8 + "p4d.24xlarge,A100,8,96,1152,,32.77,9.0,us-east-1,use1-az1,x86_64\n")
    (old / "AS_OF").write_text("2026-01-05\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: old\nkind: train\nresources: {accelerators: A100:8, spot: true, clouds: [aws]}\n"
                      "workload: {entrypoint: python train.py}\n")
    env = {k: "" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                           "GOOGLE_APPLICATION_CREDENTIALS")}
    env.update(RAYCTL_CATALOG=str(old), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), CLOUDSDK_CONFIG=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true")
    r = cli("launch", recipe, "--target", "cloud", "--yes", env=env, timeout=120)
    assert r.code == 2, r  # no credentials: nothing starts
    assert_no_traceback(r)
    assert r.err.count("days old (as of 2026-01-05)") == 1, r.err
    assert "rayctl pricing refresh" in r.err


def test_a_gpu_the_snapshot_lacks_points_at_refresh(cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t4\nkind: train\nresources: {accelerators: T4:1}\n")
    r = cli("plan", recipe)
    assert r.code == 3, r
    assert "T4 is not in this catalog" in r.err and "`rayctl pricing refresh` (no credentials needed)" in r.err
    assert_no_traceback(r)
