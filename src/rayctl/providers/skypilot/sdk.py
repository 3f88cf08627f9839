"""The few SkyPilot client-SDK calls rayctl makes (SkyPilot 0.14.1), in one place.

Every call goes through SkyPilot's local API server (SkyPilot starts it on first use,
15-35 s); rayctl never calls these on the plan path or before the credential check.
Requests are asynchronous in SkyPilot: each SDK function returns a request id that
`sky.get` / `sky.stream_and_get` resolves. Tests inject a fake `sky` module object
implementing exactly these functions (see tests/cloud/fake_sky.py).
"""

from __future__ import annotations

from dataclasses import dataclass

MANAGED_FIELDS = ["job_id", "job_name", "status", "recovery_count", "cloud", "region", "zone",
                  "cluster_resources", "cluster_resources_full", "resources", "failure_reason",
                  "submitted_at", "start_at", "end_at", "last_recovered_at", "current_cluster_name",
                  "details"]

MANAGED_TERMINAL = ("SUCCEEDED", "CANCELLED", "FAILED", "FAILED_SETUP", "FAILED_PRECHECKS",
                    "FAILED_NO_RESOURCE", "FAILED_CONTROLLER")
CLUSTER_JOB_TERMINAL = ("SUCCEEDED", "FAILED", "FAILED_SETUP", "FAILED_DRIVER", "CANCELLED")


def status_name(st) -> str | None:
    if st is None:
        return None
    return str(getattr(st, "value", st)).upper()


def _field(rec, name, default=None):
    if isinstance(rec, dict):
        return rec.get(name, default)
    return getattr(rec, name, default)


@dataclass
class Location:
    """Where SkyPilot placed a cluster."""

    cloud: str | None
    region: str | None
    zone: str | None
    resources: str  # SkyPilot's resources string, e.g. "1x AWS(p4d.24xlarge[Spot], ...)"
    instance_type: str | None = None
    spot: bool | None = None

    @property
    def key(self):
        return (self.cloud, self.region, self.zone, self.instance_type, self.spot)


@dataclass
class ManagedRecord:
    job_id: int
    status: str | None
    recovery_count: int
    location: Location | None
    failure_reason: str | None
    cluster: str | None


def _norm_cloud(c) -> str | None:
    if c is None:
        return None
    s = str(c).strip().lower()
    return None if s in ("", "-", "none") else s


def _none_dash(v):
    return None if v in (None, "", "-") else v


class SkyClient:
    def __init__(self, sky=None):
        if sky is None:
            import sky  # noqa: F811 - lazy, heavy
        self.sky = sky

    # ------------------------------------------------------------- tasks
    def task(self, config: dict):
        import json

        return self.sky.Task.from_yaml_config(json.loads(json.dumps(config)))

    def cancel_request(self, request_id) -> None:
        self.sky.api_cancel(request_id)

    # ------------------------------------------------------------- managed jobs
    def launch_managed(self, task, name: str, output_stream=None, on_request=None) -> int:
        req = self.sky.jobs.launch(task, name=name)
        if on_request:
            on_request(req)
        result = self.sky.stream_and_get(req, output_stream=output_stream)
        job_ids = result[0] if isinstance(result, tuple) else result
        if isinstance(job_ids, (list, tuple)):
            job_ids = job_ids[0] if job_ids else None
        if job_ids is None:
            raise RuntimeError(f"SkyPilot returned no managed job id for {name}")
        return int(job_ids)

    def managed_record(self, job_id: int) -> ManagedRecord | None:
        res = self.sky.get(self.sky.jobs.queue_v2(refresh=False, job_ids=[job_id], fields=MANAGED_FIELDS))
        records = res[0] if isinstance(res, tuple) else res
        for r in records or []:
            if _field(r, "job_id") == job_id:
                loc = None
                cloud = _norm_cloud(_field(r, "cloud"))
                if cloud:
                    loc = Location(cloud, _none_dash(_field(r, "region")), _none_dash(_field(r, "zone")),
                                   str(_field(r, "cluster_resources_full") or _field(r, "cluster_resources")
                                       or _field(r, "resources") or ""))
                return ManagedRecord(job_id=job_id, status=status_name(_field(r, "status")),
                                     recovery_count=int(_field(r, "recovery_count") or 0), location=loc,
                                     failure_reason=_field(r, "failure_reason"),
                                     cluster=_field(r, "current_cluster_name"))
        return None

    def managed_by_name(self, name: str) -> list[int]:
        res = self.sky.get(self.sky.jobs.queue_v2(refresh=False, name_match=name, fields=["job_id", "job_name",
                                                                                          "status"]))
        records = res[0] if isinstance(res, tuple) else res
        return [int(_field(r, "job_id")) for r in records or []
                if _field(r, "job_name") == name and status_name(_field(r, "status")) not in MANAGED_TERMINAL]

    def cancel_managed(self, job_id: int | None = None, name: str | None = None) -> None:
        if job_id is not None:
            self.sky.get(self.sky.jobs.cancel(job_ids=[job_id]))
        else:
            self.sky.get(self.sky.jobs.cancel(name=name))

    def managed_logs(self, job_id: int, follow: bool, output_stream) -> int | None:
        return self.sky.jobs.tail_logs(job_id=job_id, follow=follow, output_stream=output_stream)

    # ------------------------------------------------------------- clusters (serve, kept clusters)
    def launch_cluster(self, task, name: str, *, idle_minutes: int | None, down: bool, output_stream=None,
                       on_request=None):
        req = self.sky.launch(task, cluster_name=name, idle_minutes_to_autostop=idle_minutes, down=down,
                              retry_until_up=False)
        if on_request:
            on_request(req)
        job_id, handle = self.sky.stream_and_get(req, output_stream=output_stream)
        return job_id, handle

    @staticmethod
    def handle_location(handle) -> Location | None:
        r = getattr(handle, "launched_resources", None)
        if r is None:
            return None
        return Location(_norm_cloud(getattr(r, "cloud", None)), getattr(r, "region", None),
                        getattr(r, "zone", None), str(r), getattr(r, "instance_type", None),
                        getattr(r, "use_spot", None))

    def cluster_job_status(self, name: str, job_id: int) -> str | None:
        res = self.sky.get(self.sky.job_status(name, [job_id]))
        return status_name((res or {}).get(job_id))

    def cluster_status(self, name: str) -> str | None:
        recs = self.sky.get(self.sky.status([name]))
        for r in recs or []:
            if _field(r, "name") == name:
                return status_name(_field(r, "status"))
        return None

    def cluster_logs(self, name: str, job_id: int | None, follow: bool, output_stream) -> int | None:
        return self.sky.tail_logs(name, job_id, follow, output_stream=output_stream)

    def down(self, name: str) -> None:
        try:
            self.sky.get(self.sky.down(name))
        except Exception as e:
            if type(e).__name__ == "ClusterDoesNotExist":
                return
            raise

    def endpoint(self, name: str, port: int) -> str | None:
        res = self.sky.get(self.sky.endpoints(name, port)) or {}
        return res.get(port) or res.get(str(port))
