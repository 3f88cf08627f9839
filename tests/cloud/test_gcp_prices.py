"""Live GCP GPU availability and quota: the real google-cloud-compute client (REST
transport, anonymous credentials) against a local fake Compute API server.

Covers the paginated aggregated accelerator list, per-region quotas (one exhausted,
one region answering 503), a failing refresh keeping the old data, and the planner
dropping zones without the GPU and pricing modes without quota.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from google.auth.credentials import AnonymousCredentials

from cloudkit import GCP_CSV, RAYCTL
from rayctl.planning import catalog, planner, price_cache, refresh as prices
from rayctl import recipe as recipe_mod
from rayctl.planning.refresh import gcp

pytestmark = pytest.mark.timeout(60)

PAGES = {
    None: {"items": {
        "zones/us-central1-a": {"acceleratorTypes": [
            {"name": "nvidia-tesla-a100", "maximumCardsPerInstance": 16, "zone": "us-central1-a"},
            {"name": "nvidia-l4", "maximumCardsPerInstance": 8, "zone": "us-central1-a"},
            {"name": "nvidia-l4-vws", "maximumCardsPerInstance": 8, "zone": "us-central1-a"}]},
        "zones/asia-east1-a": {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "none"}},
    }, "nextPageToken": "page-2"},
    "page-2": {"items": {
        "zones/europe-west4-a": {"acceleratorTypes": [
            {"name": "nvidia-l4", "maximumCardsPerInstance": 8, "zone": "europe-west4-a"},
            {"name": "nvidia-h100-80gb", "maximumCardsPerInstance": 8, "zone": "europe-west4-a"}]},
    }},
}

QUOTAS = {
    "us-central1": [
        {"metric": "NVIDIA_A100_GPUS", "limit": 16, "usage": 16},  # on-demand A100 quota used up
        {"metric": "PREEMPTIBLE_NVIDIA_A100_GPUS", "limit": 64, "usage": 0},
        {"metric": "NVIDIA_L4_GPUS", "limit": 8, "usage": 0},
        {"metric": "CPUS", "limit": 2400, "usage": 10},
    ],
}


class FakeCompute(BaseHTTPRequestHandler):
    fail_regions: set = set()
    fail_aggregated = False
    calls: list = []

    def log_message(self, *a):
        pass

    def _send(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        FakeCompute.calls.append((u.path, q))
        parts = u.path.strip("/").split("/")
        # /compute/v1/projects/{project}/aggregated/acceleratorTypes
        if parts[-2:] == ["aggregated", "acceleratorTypes"]:
            if FakeCompute.fail_aggregated:
                return self._send(500, {"error": {"code": 500, "message": "backendError"}})
            return self._send(200, PAGES[q.get("pageToken", [None])[0]])
        # /compute/v1/projects/{project}/regions/{region}
        if parts[-2] == "regions":
            region = parts[-1]
            if region in FakeCompute.fail_regions:
                return self._send(503, {"error": {"code": 503, "message": "Service Unavailable"}})
            return self._send(200, {"name": region, "quotas": QUOTAS.get(region, [])})
        return self._send(404, {"error": {"code": 404, "message": "not found"}})


@pytest.fixture
def compute_api():
    FakeCompute.fail_regions = set()
    FakeCompute.fail_aggregated = False
    FakeCompute.calls = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeCompute)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def sky_home(tmp_path, monkeypatch):
    home = tmp_path / "user"
    (home / ".sky" / "catalogs" / "v8" / "gcp").mkdir(parents=True)
    (home / ".sky" / "catalogs" / "v8" / "gcp" / "vms.csv").write_text(GCP_CSV)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SKY_RUNTIME_DIR", raising=False)
    return home


def _refresh(url, **kw):
    return prices.refresh_gcp(project="proj-1", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": url}, timeout_s=5, retry_s=0.5, **kw)


def test_accelerators_aggregated_list_is_paginated_and_normalised(compute_api):
    acc_client, _ = gcp.clients(credentials=AnonymousCredentials(), client_options={"api_endpoint": compute_api})
    rows = gcp.accelerators(acc_client, "proj-1", timeout_s=5, retry_s=0.5)
    assert {(r["AcceleratorName"], r["AvailabilityZone"], r["MaxCount"]) for r in rows} == {
        ("A100", "us-central1-a", 16), ("L4", "us-central1-a", 8), ("L4", "europe-west4-a", 8),
        ("H100", "europe-west4-a", 8)}
    assert [q.get("pageToken") for p, q in FakeCompute.calls] == [None, ["page-2"]]


def test_refresh_drops_zones_without_the_gpu_and_modes_without_quota(compute_api, rayctl_home, sky_home,
                                                                      write_recipe):
    FakeCompute.fail_regions = {"europe-west4"}
    rep = _refresh(compute_api)
    assert rep["ok"] and rep["regions"] == ["us-central1"]
    assert "europe-west4" in rep["errors"] and "503" in rep["errors"]["europe-west4"]
    # 503s are retried, within a bound
    tries = sum(1 for p, q in FakeCompute.calls if p.endswith("/regions/europe-west4"))
    assert 1 <= tries <= 5

    cat = catalog.load()
    assert "rayctl live data (gcp" in cat.source
    # (other clouds come from the shipped snapshot: price data is chosen per cloud)
    a100 = {(o.zone): (o.price, o.spot_price) for o in cat.offers if o.accelerator == "A100" and o.cloud == "gcp"}
    # europe-west4-a does not list nvidia-tesla-a100: the A100 offer there is gone
    assert "europe-west4-a" not in a100
    # us-central1: on-demand A100 quota exhausted -> no on-demand price; preemptible quota left -> spot stays
    assert a100["us-central1-a"] == (None, 6.5)
    l4 = [o for o in cat.offers if o.accelerator == "L4" and o.cloud == "gcp"]
    assert [(o.zone, o.price) for o in l4] == [("us-central1-a", 0.7)]

    r = recipe_mod.load(write_recipe("""\
        name: g
        kind: train
        resources:
          accelerators: A100:8
          spot: auto
          clouds: [gcp]
        """))
    p = planner.plan(r, cat)
    assert [(c.zone, c.spot) for c in p.candidates] == [("us-central1-a", True)]
    from rayctl.planning.price_cache import quota_allows

    assert quota_allows(p.candidates[0], nodes=8) is True     # 64 GPUs of preemptible quota
    assert quota_allows(p.candidates[0], nodes=9) is False    # 72 > 64


def test_failed_refresh_keeps_old_data_and_plan_says_how_old(compute_api, rayctl_home, sky_home, write_recipe,
                                                            tmp_path):
    assert _refresh(compute_api)["ok"]
    meta = price_cache.read_meta()
    meta["gcp"]["fetched_at"] = "2026-11-01T00:00:00Z"  # make the good data old
    price_cache.write_meta(meta)
    FakeCompute.fail_aggregated = True
    FakeCompute.fail_regions = {"us-central1", "europe-west4"}
    rep = _refresh(compute_api)
    assert not rep["ok"] and "acceleratorTypes" in rep["errors"]
    acc = price_cache._read_csv(price_cache.cache_dir() / "gcp" / "accelerators.csv")
    assert {r["AvailabilityZone"] for r in acc} == {"us-central1-a", "europe-west4-a"}  # old data kept

    rec = write_recipe("""\
        name: g
        kind: train
        resources:
          accelerators: A100:8
          spot: true
          clouds: [gcp]
        """)
    env = dict(os.environ, HOME=str(sky_home), RAYCTL_HOME=str(rayctl_home), COLUMNS="200")
    env.pop("RAYCTL_CATALOG", None)
    out = subprocess.run([*RAYCTL, "plan", str(rec)], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "rayctl live data (gcp" in out.stdout and "days old" in out.stdout
    assert "last `rayctl pricing refresh` for gcp failed" in out.stderr
    assert "us-central1-a" in out.stdout and "europe-west4-a" not in out.stdout
