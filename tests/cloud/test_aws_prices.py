"""Live AWS spot prices: the real boto3 EC2 client against botocore's Stubber.

Covers pagination, several regions (one failing), the zone-name -> zone-ID mapping,
the latest price per (instance type, AZ), AZs missing on either side, and the overlay
the planner sees afterwards.
"""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import ANY, Stubber

from cloudkit import AWS_CSV
from rayctl.planning import catalog, price_cache, refresh as prices
from rayctl.planning.refresh import aws

pytestmark = pytest.mark.timeout(60)

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)


def _zones(region, pairs):
    return {"AvailabilityZones": [{"ZoneName": n, "ZoneId": i, "RegionName": region, "State": "available",
                                   "ZoneType": "availability-zone"} for n, i in pairs]}


def _price(itype, az, price, minutes_ago=0):
    return {"InstanceType": itype, "AvailabilityZone": az, "SpotPrice": f"{price:.4f}",
            "ProductDescription": "Linux/UNIX", "Timestamp": NOW - dt.timedelta(minutes=minutes_ago)}


class Factory:
    """Real EC2 clients, one per region, each with a Stubber holding that region's script."""

    def __init__(self):
        self.stubbers = {}
        self.scripts = {}

    def script(self, region, steps):
        self.scripts[region] = steps

    def __call__(self, region):
        c = boto3.client("ec2", region_name=region, config=aws._config(5.0))
        st = Stubber(c)
        for method, resp, params in self.scripts[region]:
            if method == "error":
                st.add_client_error("describe_availability_zones", service_error_code=resp, http_status_code=503)
            else:
                st.add_response(method, resp, params)
        st.activate()
        self.stubbers[region] = st
        return c


@pytest.fixture
def creds(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _hist_params(types, token=None):
    p = {"InstanceTypes": types, "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY}
    if token:
        p["NextToken"] = token
    return p


def _east(f):
    types = ["g5.xlarge", "p4d.24xlarge"]
    f.script("us-east-1", [
        ("describe_availability_zones", _zones("us-east-1", [("us-east-1a", "use1-az1"), ("us-east-1b", "use1-az2"),
                                                             ("us-east-1c", "use1-az4")]), None),
        ("describe_spot_price_history", {"SpotPriceHistory": [
            _price("p4d.24xlarge", "us-east-1a", 9.10, minutes_ago=90),   # older: superseded below
            _price("g5.xlarge", "us-east-1a", 0.38),
        ], "NextToken": "page2"}, _hist_params(types)),
        ("describe_spot_price_history", {"SpotPriceHistory": [
            _price("p4d.24xlarge", "us-east-1a", 4.20, minutes_ago=5),   # latest for use1-az1
            _price("p4d.24xlarge", "us-east-1c", 4.80),                  # use1-az4: not in the catalog
            # no p4d price for us-east-1b (use1-az2): EC2 has no spot p4d there now
        ], "NextToken": ""}, _hist_params(types, "page2")),
    ])


def test_fetch_paginates_keeps_latest_per_az_and_maps_zone_ids(creds):
    f = Factory()
    _east(f)
    f.script("us-west-2", [
        ("describe_availability_zones", _zones("us-west-2", [("us-west-2a", "usw2-az1"), ("us-west-2b", "usw2-az2")]),
         None),
        ("describe_spot_price_history", {"SpotPriceHistory": [_price("p4d.24xlarge", "us-west-2a", 5.90)]},
         _hist_params(["p4d.24xlarge"])),
    ])
    f.script("eu-west-1", [("error", "RequestLimitExceeded", None)])
    rows, names, errors = aws.fetch({"us-east-1": ["p4d.24xlarge", "g5.xlarge"], "us-west-2": ["p4d.24xlarge"],
                                     "eu-west-1": ["p4d.24xlarge"]}, client_factory=f, now=NOW)
    got = {(r["InstanceType"], r["AvailabilityZone"]): float(r["SpotPrice"]) for r in rows}
    assert got == {("g5.xlarge", "use1-az1"): 0.38, ("p4d.24xlarge", "use1-az1"): 4.20,
                   ("p4d.24xlarge", "use1-az4"): 4.80, ("p4d.24xlarge", "usw2-az1"): 5.90}
    assert names["us-east-1c"] == "use1-az4"
    assert set(errors) == {"eu-west-1"} and "RequestLimitExceeded" in errors["eu-west-1"]
    for region in ("us-east-1", "us-west-2"):
        f.stubbers[region].assert_no_pending_responses()  # both pages were read


def test_refresh_overlays_live_prices_on_the_catalog(creds, rayctl_home, tmp_path, monkeypatch, mini_catalog):
    home = tmp_path / "user"
    v8 = home / ".sky" / "catalogs" / "v8"
    (v8 / "aws").mkdir(parents=True)
    (v8 / "aws" / "vms.csv").write_text(AWS_CSV)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SKY_RUNTIME_DIR", raising=False)
    f = Factory()
    _east(f)
    f.script("us-west-2", [("error", "Unavailable", None)])
    rep = prices.refresh_aws(client_factory=f)
    assert rep["ok"] and rep["regions"] == ["us-east-1"] and "us-west-2" in rep["errors"]

    cat = catalog.load()
    assert "rayctl live data (aws" in cat.source
    assert any("last `rayctl pricing refresh` for aws failed" in w for w in cat.warnings)
    spot = {(o.instance_type, o.zone): o.spot_price for o in cat.offers}
    assert spot[("p4d.24xlarge", "use1-az1")] == 4.20          # live price replaces 5.00
    assert spot[("p4d.24xlarge", "use1-az2")] is None          # no live spot price: spot offer gone
    assert spot[("p4d.24xlarge", "use1-az4")] == 4.80          # AZ the catalog lacked
    assert spot[("p4d.24xlarge", "usw2-az1")] == 6.00          # region that failed keeps catalog data
    od = {(o.instance_type, o.zone): o.price for o in cat.offers}
    assert od[("p4d.24xlarge", "use1-az2")] == 32.77          # on-demand is untouched
    # the account's zone names are saved for task generation
    from rayctl.providers.skypilot.candidates import aws_zone_names

    assert aws_zone_names()["use1-az4"] == "us-east-1c"

    # a second refresh where every region fails keeps the data and says how old it is
    f2 = Factory()
    f2.script("us-east-1", [("error", "RequestLimitExceeded", None)])
    f2.script("us-west-2", [("error", "RequestLimitExceeded", None)])
    rep2 = prices.refresh_aws(client_factory=f2)
    assert not rep2["ok"]
    meta = price_cache.read_meta()
    assert meta["aws"]["fetched_at"] and "RequestLimitExceeded" in meta["aws"]["error"]
    cat = catalog.load()
    assert {(o.instance_type, o.zone): o.spot_price for o in cat.offers}[("p4d.24xlarge", "use1-az1")] == 4.20
    # an explicit --catalog is used as given (no overlay)
    cat = catalog.load(str(mini_catalog))
    assert "rayctl live data" not in cat.source


def test_stale_cache_is_flagged(rayctl_home, mini_catalog, monkeypatch, tmp_path):
    d = price_cache.cache_dir()
    price_cache.write_csv(d / "aws" / "spot_prices.csv",
                          ["InstanceType", "Region", "AvailabilityZone", "AvailabilityZoneName", "SpotPrice",
                           "Timestamp"],
                          [{"InstanceType": "p4d.24xlarge", "Region": "us-east-1", "AvailabilityZone": "use1-az1",
                            "AvailabilityZoneName": "us-east-1a", "SpotPrice": "3.0", "Timestamp": "x"}])
    price_cache.write_meta({"aws": {"fetched_at": "2026-11-20T00:00:00Z", "attempted_at": "2026-11-20T00:00:00Z",
                                    "error": None}})
    cat = catalog.load_dir(mini_catalog, "base")
    price_cache.overlay(cat, now=dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc))
    assert "aws 5.0 days old" in cat.source
    assert any("5.0 days old" in w for w in cat.warnings)


def test_default_clients_have_timeouts():
    make = aws.default_client_factory(timeout_s=7)
    c = make("us-east-1")
    assert c.meta.config.read_timeout == 7 and c.meta.config.connect_timeout == 5
    assert c.meta.config.retries["total_max_attempts"] == 3  # 2 retries: bounded
