"""launch / poll / recover / teardown of the cloud target, against a fake SkyPilot SDK.

The fake (fake_sky.py) sits exactly at the SDK boundary rayctl calls (`sky.jobs.launch`,
`sky.jobs.queue_v2`, `sky.launch`, `sky.down`, ...); everything above it -- task
generation, the ordered candidates, polling, ledger segments/events, budget, teardown --
is the real code. Each test asserts that no cluster is left (`fake.clusters == {}`)
and what the ledger says.
"""

from __future__ import annotations

import pytest

from cloudkit import SPEC, ZONE_NAMES
from fake_sky import FakeSky
from rayctl.planning import catalog, planner
from rayctl import recipe as recipe_mod
from rayctl.errors import Interrupted, JobFailed
from rayctl.providers.skypilot import registry as cloud_registry, provider as skypilot
from rayctl.planning.credentials import CloudCheck

pytestmark = pytest.mark.timeout(60)

TRAIN = """\
name: spot-train
kind: train
resources:
  accelerators: A100:8
  spot: true
  clouds: [aws, gcp]
  checkpoint_minutes: 10
workload:
  entrypoint: python train.py
"""


def checker(*enabled):
    enabled = enabled or ("aws", "gcp")
    return lambda clouds: {c: CloudCheck(c, c in enabled, "test") for c in clouds}


def setup(write_recipe, mini_catalog, ledger, text=TRAIN):
    r = recipe_mod.load(write_recipe(text))
    p = planner.plan(r, catalog.load(str(mini_catalog)))
    rid = ledger.start_run(recipe=r.name, kind=r.kind, target="cloud", recipe_path=r.path)
    return r, p, rid


def launch(r, p, ledger, rid, fake, clock, **kw):
    kw.setdefault("checker", checker())
    return skypilot.launch_cloud(r, p, ledger, rid, sky=fake, spec=SPEC, zone_names=ZONE_NAMES, clock=clock,
                                 sleep=clock.sleep, poll_s=60, quiet=True, **kw)


def kinds(ledger, rid):
    return [e["kind"] for e in ledger.events(rid)]


def test_capacity_errors_on_first_candidates_fail_over_in_plan_order(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    labels = [c.label for c in p.candidates]
    assert p.candidates[0].zone == "use1-az1" and p.candidates[1].zone == "use1-az2"
    fake = FakeSky(unavailable={"aws/us-east-1/us-east-1a", "aws/us-east-1/us-east-1b"})
    row = launch(r, p, ledger, rid, fake, clock)

    task = fake.tasks[0].config
    assert [e["infra"] for e in task["resources"]["ordered"]][:3] == [
        "aws/us-east-1/us-east-1a", "aws/us-east-1/us-east-1b", "aws/us-west-2/us-west-2a"]
    assert task["resources"]["job_recovery"]["strategy"] == "EAGER_NEXT_REGION"
    assert row["status"] == "succeeded"
    assert (row["cloud"], row["region"], row["zone"]) == ("aws", "us-west-2", "usw2-az1")
    assert row["hourly_usd"] == pytest.approx(p.candidates[2].hourly_usd)
    fo = ledger.events(rid, kind="failover")
    assert len(fo) == 1 and fo[0]["detail"]["skipped"] == labels[:2]
    assert row["rows"] == 1000 and row["output_tokens"] == 700
    assert fake.clusters == {}
    assert cloud_registry.for_run(ledger, rid)["state"] == "down"
    segs = ledger.segments(rid)
    assert len(segs) == 1 and segs[0]["ended_at"] and segs[0]["spot"] == 1
    assert row["cost_usd"] == pytest.approx(p.candidates[2].hourly_usd * 3 * 60 / 3600, rel=1e-3)


def test_preemption_mid_job_relaunches_on_next_region_and_resumes(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky(run_polls=4, preempt_at_polls={2})
    row = launch(r, p, ledger, rid, fake, clock)

    job = fake.managed[1]
    assert job["incarnations"] == ["aws/us-east-1/us-east-1a", "aws/us-west-2/us-west-2a"]
    assert job["recovery_count"] == 1
    log = open(row["log_path"]).read()
    assert "starting from scratch" in log and "resuming from checkpoint step 4" in log
    assert row["status"] == "succeeded"
    assert kinds(ledger, rid) == ["launch", "submitted", "provisioned", "preemption", "recovery", "teardown"]
    pre = ledger.events(rid, kind="preemption")[0]
    rec = ledger.events(rid, kind="recovery")[0]
    assert (pre["region"], pre["zone"], pre["instance_type"]) == ("us-east-1", "use1-az1", "p4d.24xlarge")
    assert (rec["region"], rec["zone"]) == ("us-west-2", "usw2-az1")
    segs = ledger.segments(rid)
    assert [(s["region"], s["hourly_usd_per_node"]) for s in segs] == [("us-east-1", 5.0), ("us-west-2", 6.0)]
    assert all(s["ended_at"] for s in segs)
    assert (row["region"], row["zone"]) == ("us-west-2", "usw2-az1")
    assert fake.clusters == {}


def test_job_failure_is_recorded_and_cluster_released(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky(outcome="FAILED")
    with pytest.raises(JobFailed, match="FAILED"):
        launch(r, p, ledger, rid, fake, clock)
    row = ledger.get(rid)
    assert row["status"] == "failed" and "exited with code 1" in row["reason"]
    assert "job_failed" in kinds(ledger, rid)
    assert fake.clusters == {}
    assert cloud_registry.for_run(ledger, rid)["state"] == "down"


def test_ctrl_c_while_running_cancels_the_job(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky(run_polls=10, interrupt=("poll", 3))
    with pytest.raises(Interrupted):
        launch(r, p, ledger, rid, fake, clock)
    assert ("jobs.cancel", (1,), None) in fake.calls
    assert fake.managed[1]["status"] == "CANCELLED"
    assert fake.clusters == {}
    row = ledger.get(rid)
    assert row["status"] == "interrupted" and "Ctrl-C" in row["reason"]
    assert "teardown" in kinds(ledger, rid)
    assert cloud_registry.for_run(ledger, rid)["state"] == "down"


def test_ctrl_c_during_launch_request_cancels_by_name(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky(interrupt="launch")  # the server created the job, the client was interrupted
    with pytest.raises(Interrupted):
        launch(r, p, ledger, rid, fake, clock)
    assert fake.cancelled_requests, "the in-flight launch request must be cancelled"
    assert fake.managed[1]["status"] == "CANCELLED"
    assert fake.clusters == {}
    assert ledger.get(rid)["status"] == "interrupted"


def test_a_request_that_cannot_be_cancelled_is_reported_and_teardown_goes_on(write_recipe, mini_catalog, ledger,
                                                                             clock, capsys):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky(interrupt="launch", api_cancel_fails=True)
    with pytest.raises(Interrupted):
        skypilot.launch_cloud(r, p, ledger, rid, sky=fake, spec=SPEC, zone_names=ZONE_NAMES, clock=clock,
                              sleep=clock.sleep, poll_s=60, quiet=False, checker=checker())
    assert "could not cancel SkyPilot request" in capsys.readouterr().err
    assert "cancel_request_failed" in kinds(ledger, rid)
    assert fake.managed[1]["status"] == "CANCELLED" and fake.clusters == {}


def test_teardown_failure_is_loud_recorded_and_down_all_retries(write_recipe, mini_catalog, ledger, clock, capsys):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky(run_polls=10, interrupt=("poll", 2), cancel_fails=True)
    with pytest.raises(Interrupted, match="teardown FAILED"):
        launch(r, p, ledger, rid, fake, clock)
    err = capsys.readouterr().err
    name = skypilot.tasks.cluster_name(rid)
    assert "could not tear down cloud cluster" in err and name in err and "sky jobs cancel 1" in err
    assert "abc123SECRET" not in err  # credentials in provider errors are redacted
    row = ledger.get(rid)
    assert row["status"] == "interrupted" and "TEARDOWN FAILED" in row["reason"]
    ev = ledger.events(rid, kind="teardown_failed")[0]
    assert ev["detail"]["cluster"] == name and "abc123SECRET" not in str(ev)
    assert cloud_registry.get(ledger, name)["state"] == "teardown_failed"
    assert fake.clusters, "the cluster is still there (teardown failed)"

    fake.cancel_fails = False
    res = skypilot.down_all(ledger, sky=fake, clock=clock)
    assert res == [{"name": name, "run_id": rid, "mode": "managed", "result": "down"}]
    assert fake.clusters == {}
    assert cloud_registry.get(ledger, name)["state"] == "down"
    assert skypilot.down_all(ledger, sky=fake) == []


def test_budget_max_usd_stops_and_tears_down(write_recipe, mini_catalog, ledger, clock):
    text = TRAIN + "budget:\n  max_usd: 6.0\n"
    r, p, rid = setup(write_recipe, mini_catalog, ledger, text)
    assert [c.hourly_usd for c in p.candidates] == [5.0, 5.5, 6.0]  # the plan keeps offers within budget
    # Capacity only on the $6/h offer: $6.00 lasts 60 min there.
    fake = FakeSky(run_polls=1000, unavailable={"aws/us-east-1/us-east-1a", "aws/us-east-1/us-east-1b"})
    start = clock.t
    with pytest.raises(skypilot.BudgetExceeded, match="max_usd"):
        launch(r, p, ledger, rid, fake, clock)
    row = ledger.get(rid)
    assert row["status"] == "stopped" and "budget" in row["reason"]
    # polls every 60 s: stops at the last poll before the spend would pass $6.00
    assert row["cost_usd"] <= 6.0
    assert row["cost_usd"] == pytest.approx(6.0 * 59 / 60, rel=1e-3)
    assert "budget_stop" in kinds(ledger, rid)
    assert fake.clusters == {} and fake.managed[1]["status"] == "CANCELLED"
    # the head node's hard deadline: the budget at the cheapest candidate's price ($5/h -> 72 min)
    env = fake.tasks[0].config["envs"]
    assert int(env["RAYCTL_DEADLINE"]) == pytest.approx(start + 6.0 / 5.0 * 3600, abs=2)


def test_budget_max_hours_stops(write_recipe, mini_catalog, ledger, clock):
    text = TRAIN + "budget:\n  max_hours: 0.1\n"
    r, p, rid = setup(write_recipe, mini_catalog, ledger, text)
    fake = FakeSky(run_polls=100)
    with pytest.raises(skypilot.BudgetExceeded, match="max_hours"):
        launch(r, p, ledger, rid, fake, clock)
    assert ledger.get(rid)["status"] == "stopped"
    assert clock.slept <= 0.1 * 3600
    assert fake.clusters == {}


def test_all_candidates_without_capacity_fail_cleanly(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky()
    fake.unavailable = {"aws/us-east-1/us-east-1a", "aws/us-east-1/us-east-1b", "aws/us-west-2/us-west-2a",
                        "aws/us-west-2/us-west-2b", "gcp/us-central1/us-central1-a", "gcp/europe-west4/europe-west4-a"}
    with pytest.raises(JobFailed, match="FAILED_NO_RESOURCE"):
        launch(r, p, ledger, rid, fake, clock)
    assert ledger.get(rid)["status"] == "failed"
    assert fake.clusters == {}


SERVE = """\
name: chat
kind: serve
resources:
  accelerators: A10G:1
  clouds: [aws]
budget:
  max_hours: 2
workload:
  entrypoint: python serve.py
"""


def test_serve_brings_up_a_cluster_and_reports_the_endpoint(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger, SERVE)
    fake = FakeSky(run_polls=2)
    row = launch(r, p, ledger, rid, fake, clock)
    assert row["status"] == "serving"
    assert row["metrics"]["url"] == "http://34.1.2.3:8000"
    name = skypilot.tasks.cluster_name(rid)
    assert fake.clusters[name]["status"] == "UP"
    # budget.max_hours becomes the serve cluster's autodown (time to live)
    assert ("launch", name, 120, True) in fake.calls
    cfg = fake.tasks[0].config
    assert cfg["resources"]["ports"] == [8000] and cfg["envs"]["RAYCTL_SERVE_PORT"] == "8000"
    st = skypilot.cloud_status(ledger.get(rid), ledger, sky=fake, clock=clock)
    assert st["endpoint"] == "34.1.2.3:8000" and st["status"] == "serving"
    row = skypilot.cloud_stop(ledger.get(rid), ledger, sky=fake, clock=clock)
    assert row["status"] == "stopped" and fake.clusters == {}


def test_serve_capacity_exhausted_deletes_half_made_cluster(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger, SERVE)
    fake = FakeSky(unavailable={"aws/us-east-1/us-east-1a", "aws/us-west-2/us-west-2a"})
    with pytest.raises(JobFailed, match="no capacity on any of the 2 candidate"):
        launch(r, p, ledger, rid, fake, clock)
    assert fake.clusters == {}
    row = ledger.get(rid)
    assert row["status"] == "failed" and "no capacity" in row["reason"]


def test_serve_teardown_failure_after_ctrl_c_names_the_cluster(write_recipe, mini_catalog, ledger, clock, capsys):
    r, p, rid = setup(write_recipe, mini_catalog, ledger, SERVE)
    fake = FakeSky(interrupt="launch", down_fails=True)
    with pytest.raises(Interrupted):
        launch(r, p, ledger, rid, fake, clock)
    err = capsys.readouterr().err
    name = skypilot.tasks.cluster_name(rid)
    assert f"sky down {name}" in err and "AKIAABCDEFGHIJKLMNOP" not in err
    assert cloud_registry.get(ledger, name)["state"] == "teardown_failed"
    fake.down_fails = False
    assert skypilot.down_all(ledger, sky=fake)[0]["result"] == "down"
    assert fake.clusters == {}


def test_detached_managed_run_is_followed_by_status(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky(run_polls=3, preempt_at_polls={1})
    row = launch(r, p, ledger, rid, fake, clock, detach=True)
    assert row["status"] == "provisioning"
    seen = []
    for _ in range(8):
        st = skypilot.cloud_status(ledger.get(rid), ledger, sky=fake, clock=clock)
        seen.append(st["sky_status"])
        clock.sleep(60)
        if st["status"] == "succeeded":
            break
    assert st["status"] == "succeeded" and "RECOVERING" in seen
    assert st["recoveries"] == 1
    row = ledger.get(rid)
    assert row["rows"] == 1000 and row["metrics"]["checkpoint"].startswith("step-")  # from the saved logs
    assert "resuming from checkpoint" in open(row["log_path"]).read()
    assert kinds(ledger, rid).count("preemption") == 1
    assert len(ledger.segments(rid)) == 2
    assert fake.clusters == {}


def test_no_credentials_fails_fast_without_sky(write_recipe, mini_catalog, ledger):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)

    class Boom:
        def __getattr__(self, name):
            raise AssertionError("SkyPilot must not be called without credentials")

    from rayctl.errors import InputError

    with pytest.raises(InputError) as e:
        skypilot.launch_cloud(r, p, ledger, rid, sky=Boom(), spec=SPEC, checker=checker("lambda"))
    msg = e.value.message
    assert "no usable credentials" in msg and "aws" in msg and "gcp" in msg and "Nothing was started" in msg
    assert e.value.exit_code == 2
    assert ledger.get(rid)["status"] == "pending"


def test_only_enabled_clouds_are_in_the_task(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky()
    launch(r, p, ledger, rid, fake, clock, checker=checker("gcp"))
    infras = [e["infra"] for e in fake.tasks[0].config["resources"]["ordered"]]
    assert infras and all(i.startswith("gcp/") for i in infras)
    assert fake.clusters == {}


def test_down_cluster_by_name_and_stop_run(write_recipe, mini_catalog, ledger, clock):
    from rayctl.errors import InputError

    r, p, rid = setup(write_recipe, mini_catalog, ledger, SERVE)
    fake = FakeSky()
    launch(r, p, ledger, rid, fake, clock)
    name = skypilot.tasks.cluster_name(rid)
    with pytest.raises(InputError, match="no cloud cluster 'nope'"):
        skypilot.down_cluster(ledger, "nope", sky=fake)
    assert skypilot.down_cluster(ledger, name, sky=fake, clock=clock)["state"] == "down"
    assert fake.clusters == {} and ledger.get(rid)["status"] == "stopped"

    r2, p2, rid2 = setup(write_recipe, mini_catalog, ledger)
    fake2 = FakeSky(run_polls=50)
    launch(r2, p2, ledger, rid2, fake2, clock, detach=True)
    row = skypilot.stop_run(ledger, rid2, sky=fake2, clock=clock)
    assert row["status"] == "stopped" and fake2.managed[1]["status"] == "CANCELLED" and fake2.clusters == {}


def test_provider_error_mid_run_tears_down(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky(run_polls=10, queue_error_at=3)
    with pytest.raises(JobFailed, match="ConnectionError: API server"):
        launch(r, p, ledger, rid, fake, clock)
    row = ledger.get(rid)
    assert row["status"] == "failed" and "ConnectionError" in row["reason"]
    assert "provider_error" in kinds(ledger, rid) and "teardown" in kinds(ledger, rid)
    assert fake.managed[1]["status"] == "CANCELLED" and fake.clusters == {}


def test_task_rejected_by_skypilot_starts_nothing(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger)
    fake = FakeSky(reject_task=True)
    with pytest.raises(JobFailed, match="SkyPilot rejected the task") as e:
        launch(r, p, ledger, rid, fake, clock)
    assert "ya29.secret-oauth" not in e.value.message
    assert ledger.get(rid)["status"] == "failed"
    assert fake.calls == [] and fake.clusters == {}
    assert cloud_registry.for_run(ledger, rid) is None


def test_log_sink_redacts_parses_and_drops_spinner_payloads(tmp_path):
    import io

    from rayctl.providers.skypilot.track import LogSink

    out = io.StringIO()
    sink = LogSink(tmp_path / "log.txt", echo=True, out=out)
    sink.write('<sky-payload>"<rich_update>Launching</rich_update>"</sky-payload>\n')
    sink.write("(head, rank=0, pid=7) ::rayctl:: {\"type\": \"metrics\", \"rows\": 12, \"url\": \"x\"}\n")
    sink.write("export AWS_SECRET_ACCESS_KEY=abcdEFGHijklMNOPqrstUVWXyz0123456789abcd\npartial")
    sink.close()
    text = (tmp_path / "log.txt").read_text()
    assert "sky-payload" not in text and "abcdEFGH" not in text and text.endswith("partial\n")
    assert out.getvalue() == text
    assert sink.ledger_fields() == {"rows": 12, "metrics": {"rows": 12, "url": "x"}}


def test_batch_that_keeps_its_cluster_then_down_all(write_recipe, mini_catalog, ledger, clock):
    text = TRAIN + "teardown:\n  after: never\n"
    r, p, rid = setup(write_recipe, mini_catalog, ledger, text)
    fake = FakeSky(run_polls=2)
    row = launch(r, p, ledger, rid, fake, clock)
    name = skypilot.tasks.cluster_name(rid)
    assert row["status"] == "succeeded" and f"rayctl down {name}" in row["reason"]
    assert ("launch", name, None, False) in fake.calls  # a cluster, no autodown
    assert fake.clusters[name]["status"] == "UP"
    assert cloud_registry.get(ledger, name)["state"] == "up"
    assert skypilot.down_all(ledger, sky=fake, clock=clock)[0]["result"] == "down"
    assert fake.clusters == {} and ledger.get(rid)["status"] == "succeeded"


def test_detached_serve_becomes_serving_on_status(write_recipe, mini_catalog, ledger, clock):
    r, p, rid = setup(write_recipe, mini_catalog, ledger, SERVE)
    fake = FakeSky()
    row = launch(r, p, ledger, rid, fake, clock, detach=True)
    assert row["status"] == "running"
    st = skypilot.cloud_status(ledger.get(rid), ledger, sky=fake, clock=clock)
    row = ledger.get(rid)
    assert st["status"] == "serving" and row["metrics"]["url"] == "http://34.1.2.3:8000"
    skypilot.cloud_stop(row, ledger, sky=fake, clock=clock)
    assert fake.clusters == {}


def test_serve_counters_are_read_before_stop(write_recipe, mini_catalog, ledger, clock):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class App(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = json.dumps({"requests": 3, "input_tokens": 120, "output_tokens": 45}).encode()
            self.send_response(200 if self.path == "/-/rayctl/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        r, p, rid = setup(write_recipe, mini_catalog, ledger, SERVE)
        fake = FakeSky(serve_endpoint=f"127.0.0.1:{srv.server_address[1]}")
        launch(r, p, ledger, rid, fake, clock)
        row = skypilot.cloud_stop(ledger.get(rid), ledger, sky=fake, clock=clock)
    finally:
        srv.shutdown()
        srv.server_close()
    assert row["status"] == "stopped" and row["input_tokens"] == 120 and row["output_tokens"] == 45
    assert row["metrics"]["requests"] == 3 and fake.clusters == {}


def test_unreadable_serve_counters_are_a_visible_warning(write_recipe, mini_catalog, ledger, clock, capsys):
    """An app whose counters cannot be read (nothing listens there) used to be skipped silently."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r, p, rid = setup(write_recipe, mini_catalog, ledger, SERVE)
    fake = FakeSky(serve_endpoint=f"127.0.0.1:{port}")
    launch(r, p, ledger, rid, fake, clock)
    row = skypilot.cloud_stop(ledger.get(rid), ledger, sky=fake, clock=clock)
    assert row["status"] == "stopped" and fake.clusters == {}
    assert "could not read the serve app's token counters" in capsys.readouterr().err
    assert "serve_metrics_unreadable" in kinds(ledger, rid)


def _status_until_final(ledger, rid, fake, clock, polls=20):
    for _ in range(polls):
        st = skypilot.cloud_status(ledger.get(rid), ledger, sky=fake, clock=clock)
        if st["status"] in ("succeeded", "failed", "stopped"):
            return st
        clock.sleep(60)
    return st


def test_detached_run_keeps_the_budget_it_started_with(write_recipe, mini_catalog, ledger, clock, capsys):
    """Issue 10: the budget is stored with the run at launch; `status` of the detached run enforces it
    even when the recipe file is gone (it used to re-read the recipe and silently mean 'no budget')."""
    text = TRAIN + "budget:\n  max_hours: 0.1\n"
    r, p, rid = setup(write_recipe, mini_catalog, ledger, text)
    fake = FakeSky(run_polls=1000)
    row = launch(r, p, ledger, rid, fake, clock, detach=True)
    assert row["budget"] == {"max_usd": None, "max_hours": 0.1}
    import os

    os.unlink(r.path)  # the stored budget is what counts now
    st = _status_until_final(ledger, rid, fake, clock)
    row = ledger.get(rid)
    assert st["status"] == "stopped" and "max_hours" in row["reason"], row
    assert "budget_stop" in kinds(ledger, rid) and "budget_unknown" not in kinds(ledger, rid)
    assert clock.slept <= 0.1 * 3600 and fake.clusters == {}
    assert "budget is unknown" not in capsys.readouterr().err


def test_reattach_without_a_stored_budget_rereads_the_recipe(write_recipe, mini_catalog, ledger, clock):
    """A run launched by an older rayctl has no budget stored: its recipe's budget applies."""
    r, p, rid = setup(write_recipe, mini_catalog, ledger, TRAIN + "budget:\n  max_hours: 0.1\n")
    fake = FakeSky(run_polls=1000)
    launch(r, p, ledger, rid, fake, clock, detach=True)
    ledger.update(rid, budget=None)
    st = _status_until_final(ledger, rid, fake, clock)
    assert st["status"] == "stopped" and "budget_stop" in kinds(ledger, rid) and fake.clusters == {}


def test_reattach_with_no_budget_and_an_unreadable_recipe_warns(write_recipe, mini_catalog, ledger, clock, capsys):
    r, p, rid = setup(write_recipe, mini_catalog, ledger, TRAIN + "budget:\n  max_hours: 0.1\n")
    fake = FakeSky(run_polls=1000)
    launch(r, p, ledger, rid, fake, clock, detach=True)
    ledger.update(rid, budget=None)  # as an older rayctl left it
    with open(r.path, "w") as f:
        f.write("name: [unclosed\n")
    capsys.readouterr()
    for _ in range(2):
        skypilot.cloud_status(ledger.get(rid), ledger, sky=fake, clock=clock)
        clock.sleep(60)
    err = capsys.readouterr().err
    assert f"run {rid}: its budget is unknown" in err and str(r.path) in err and "not enforced" in err, err
    ev = ledger.events(rid, kind="budget_unknown")
    assert len(ev) == 1 and ev[0]["detail"]["recipe_path"] == str(r.path)  # recorded once, said each time
    assert ledger.get(rid)["status"] not in ("stopped", "failed")
    skypilot.cloud_stop(ledger.get(rid), ledger, sky=fake, clock=clock)
    assert fake.clusters == {}


def test_secret_printed_by_the_job_is_masked_in_echo_log_ledger_and_logs(write_recipe, mini_catalog, ledger, clock,
                                                                         capsys, rayctl_home):
    import io
    import json

    from rayctl.providers.skypilot import operations

    secret = "hf_CloudPrintedSecret_5e4d3c2b1a"
    r, p, rid = setup(write_recipe, mini_catalog, ledger, TRAIN + f"  env:\n    HF_TOKEN: {secret}\n")
    spec = {**SPEC, "runtime_env": {"env_vars": {**SPEC["runtime_env"]["env_vars"], "HF_TOKEN": secret}}}
    fake = FakeSky(outcome="FAILED", leak_secrets=True)
    with pytest.raises(JobFailed) as e:
        skypilot.launch_cloud(r, p, ledger, rid, sky=fake, spec=spec, zone_names=ZONE_NAMES, clock=clock,
                              sleep=clock.sleep, poll_s=60, quiet=False, checker=checker())
    assert fake.tasks[0].config["secrets"]["HF_TOKEN"] == secret  # the job did get it, and printed it
    assert secret not in str(e.value)
    out = capsys.readouterr()
    assert "my token is ***REDACTED***" in out.out and secret not in out.out + out.err
    row = ledger.get(rid)
    assert row["status"] == "failed" and "exited with code 1" in row["reason"]
    assert secret not in json.dumps(row) + json.dumps(ledger.events(rid), default=str)
    log = (rayctl_home / "logs" / f"{rid}.log").read_text()
    assert "my token is ***REDACTED***" in log and secret not in log
    buf = io.StringIO()
    operations.cloud_logs(row, sky=fake, out=buf, ledger=ledger)  # `rayctl logs RUN` of a cloud run
    assert "***REDACTED***" in buf.getvalue() and secret not in buf.getvalue()
    assert fake.clusters == {}


HTTP_BATCH = """\
name: api-batch
kind: batch-infer
resources:
  accelerators: A100:8
  clouds: [aws, gcp]
workload:
  engine: http
  endpoint: https://api.openai.com/v1
  model: gpt-4o-mini
  input: s3://bucket/prompts.jsonl
  output: s3://bucket/out/
"""


def test_an_api_run_on_the_cloud_records_its_api_cost(write_recipe, mini_catalog, ledger, clock, monkeypatch):
    """`rayctl launch --target cloud` of an engine-http run prices its tokens at the managed API
    (genai-prices) on top of the cluster's cost, as on the local target."""
    import functools

    from rayctl.planning import api_prices
    from rayctl.runs import launch as runs_launch

    metrics = {"rows": 1000, "input_tokens": 1_000_000, "output_tokens": 500_000, "engine": "http",
               "endpoint": "https://api.openai.com/v1", "api_model": "gpt-4o-mini", "model": "gpt-4o-mini"}
    fake = FakeSky(final_metrics=metrics)
    monkeypatch.setattr(skypilot, "launch_cloud", functools.partial(
        skypilot.launch_cloud, sky=fake, spec=SPEC, zone_names=ZONE_NAMES, clock=clock, sleep=clock.sleep,
        poll_s=60, checker=checker()))
    r = recipe_mod.load(write_recipe(HTTP_BATCH))
    row = runs_launch.launch(r, target="cloud", catalog=str(mini_catalog), ledger=ledger, quiet=True)
    assert row["status"] == "succeeded" and fake.clusters == {}
    m = row["metrics"]
    want = api_prices.run_rates("gpt-4o-mini", api_url="https://api.openai.com/v1", input_tokens=1_000_000,
                                output_tokens=500_000, requests=1000).cost(1_000_000, 500_000)
    assert m["api"]["provider"] == "openai" and m["api_cost_usd"] == pytest.approx(want, rel=1e-6)
    assert row["cost_usd"] == pytest.approx(ledger.cost_of(row["id"]) + m["api_cost_usd"], abs=1e-4)
    assert m["api_cost_usd"] > 0 and row["cost_usd"] > m["api_cost_usd"]  # the cluster's hours are billed too
