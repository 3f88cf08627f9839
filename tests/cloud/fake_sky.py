"""A fake of SkyPilot's client SDK (0.14.1) at the boundary rayctl uses.

It implements the functions `rayctl.providers.skypilot.sdk.SkyClient` calls, with
SkyPilot's request semantics (each call returns a request that `get` /
`stream_and_get` resolves) and a small simulation of what happens behind them:

- `launch` / `jobs.launch` walk the task's `resources.ordered` list in order, as
  SkyPilot's provisioner does; candidates listed in `unavailable` fail with a
  capacity error (cluster mode raises `ResourcesUnavailableError` when all fail,
  leaving a half-made INIT cluster behind, which rayctl must delete).
- a managed job advances one step per `jobs.queue_v2` poll: STARTING -> RUNNING ->
  (preemption at scripted polls: the cluster disappears, RECOVERING, then a relaunch
  on the next available candidate in another region -- EAGER_NEXT_REGION -- with
  recovery_count + 1; the workload resumes from its last checkpoint) -> the scripted
  outcome; the controller deletes the job's cluster when the job ends or is cancelled.
- `clusters` holds every cluster that exists (= billing); tests assert it is empty.
- failures to inject: `cancel_fails`, `api_cancel_fails`, `down_fails`, `interrupt` (raise
  KeyboardInterrupt at a given point), `outcome` (SUCCEEDED / FAILED ...).
- multi-node tasks (`num_nodes` N > 1): every node of a cluster is listed; when a cluster's
  `run` starts, the head node runs rayctl's real head runner wait (`head.wait_for_nodes`)
  against a simulated Ray cluster whose N-1 workers join `worker_join_s` seconds after the
  head (None: never), on a simulated clock; only then is the job "submitted" (a line in
  the log); a timeout fails the job with the runner's exit code 76, and the controller
  releases the cluster. `preempt_worker_at_polls`: a worker node disappears, the cluster
  is no longer UP (SkyPilot 0.14's controller then reports "Cluster is preempted or
  failed (status: INIT)") and the job is recovered like any preemption: the whole cluster
  is relaunched in the next region and the head runner waits for all N nodes again.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import threading
import time
import types

import sky_signatures

SIGNATURES = sky_signatures.load()
RECEIVED: list[tuple[str, dict]] = []  # every SDK call any FakeSky received in this process, bound


def sdk(name: str):
    """Bind each call to SkyPilot 0.14.1's real signature for `name` (TypeError on a
    mismatch, as the real SDK would raise), record it, and pass the method only the
    arguments it declares (defaults filled in as the real SDK's)."""
    sig = SIGNATURES[name]

    def wrap(fn):
        own = inspect.signature(fn).parameters
        method = "self" in own

        @functools.wraps(fn)
        def call(*args, **kwargs):
            self_ = args[:1] if method else ()
            bound = sig.bind(*args[len(self_):], **kwargs)
            RECEIVED.append((name, dict(bound.arguments)))
            return fn(*self_, **{k: v for k, v in bound.arguments.items() if k in own})
        return call
    return wrap


class ResourcesUnavailableError(Exception):
    def __init__(self, message, no_failover=False, failover_history=None):
        super().__init__(message)
        self.no_failover = no_failover
        self.failover_history = list(failover_history or [])


class ClusterDoesNotExist(ValueError):
    pass


class ClusterNotUpError(Exception):
    pass


class FakeTask:
    def __init__(self, config):
        self.config = config
        self.name = config.get("name")


class _TaskFactory:
    @staticmethod
    def from_yaml_config(config):
        return FakeTask(config)


class _Resources:
    def __init__(self, entry):
        parts = entry["infra"].split("/")
        self.cloud = parts[0].upper()
        self.region = parts[1] if len(parts) > 1 else None
        self.zone = parts[2] if len(parts) > 2 else None
        self.instance_type = entry["instance_type"]
        self.use_spot = entry["use_spot"]

    def __str__(self):
        return (f"{self.cloud}({self.instance_type}{'[Spot]' if self.use_spot else ''}, "
                f"{{'{'x'}': 1}})")


class _Handle:
    def __init__(self, entry):
        self.launched_resources = _Resources(entry)


class FakeSky:
    def __init__(self, *, unavailable=(), outcome="SUCCEEDED", run_polls=3, preempt_at_polls=(),
                 cancel_fails=False, api_cancel_fails=False, down_fails=False, interrupt=None, steps_per_poll=2,
                 serve_endpoint="34.1.2.3:8000", queue_error_at=None, reject_task=False,
                 leak_secrets=False, worker_join_s=20.0, preempt_worker_at_polls=(), final_metrics=None):
        self.unavailable = set(unavailable)  # "cloud/region/zone" infra strings with no capacity
        self.outcome = outcome
        self.run_polls = run_polls  # RUNNING polls (net of preemptions) before the outcome
        self.preempt_at_polls = set(preempt_at_polls)  # running-poll numbers at which a preemption happens
        self.cancel_fails = cancel_fails
        self.api_cancel_fails = api_cancel_fails  # the API server refuses to cancel a request
        self.down_fails = down_fails
        self.interrupt = interrupt  # "launch" | ("poll", n) | None
        self.steps_per_poll = steps_per_poll
        self.serve_endpoint = serve_endpoint
        self.queue_error_at = queue_error_at  # poll number at which the API server errors once
        self.reject_task = reject_task
        self.leak_secrets = leak_secrets  # the job prints its secrets' values and fails with them in its reason
        self.worker_join_s = worker_join_s  # multi-node: seconds until the workers' raylets join (None: never)
        self.preempt_worker_at_polls = set(preempt_worker_at_polls)  # running polls at which worker node 1 is lost
        self.final_metrics = final_metrics  # the job's last metrics line on success (None: rows/tokens/checkpoint)
        self.submits: list[dict] = []  # each submission of the job on a cluster: {"job", "infra", "nodes_alive"}
        self.clusters: dict[str, dict] = {}
        self.managed: dict[int, dict] = {}
        self.calls: list = []
        self.tasks: list = []
        self.cancelled_requests: list = []
        self._next_job = 1
        self._polls = 0
        self._lock = threading.Lock()
        fake = self

        class _Tasks:
            @staticmethod
            @sdk("Task.from_yaml_config")
            def from_yaml_config(config):
                if fake.reject_task:
                    raise ValueError("Invalid task YAML: zone 'use1-az9' not found; token=ya29.secret-oauth")
                return FakeTask(config)

        self.Task = _Tasks
        self.exceptions = types.SimpleNamespace(ResourcesUnavailableError=ResourcesUnavailableError,
                                                ClusterDoesNotExist=ClusterDoesNotExist,
                                                ClusterNotUpError=ClusterNotUpError)
        self.jobs = types.SimpleNamespace(launch=self._jobs_launch, queue_v2=self._jobs_queue,
                                          cancel=self._jobs_cancel, tail_logs=self._jobs_tail_logs)

    # ---------------------------------------------------------------- requests
    @sdk("get")
    def get(self, request_id):
        return request_id(None)

    @sdk("stream_and_get")
    def stream_and_get(self, request_id, output_stream=None):
        return request_id(output_stream)

    @sdk("api_cancel")
    def api_cancel(self, request_ids):
        if self.api_cancel_fails:
            raise RuntimeError("API server at http://127.0.0.1:46580 is not healthy")
        self.cancelled_requests.append(request_ids)

    # ---------------------------------------------------------------- placement
    def _place(self, task, out, avoid_region=None):
        tried = []
        entries = task.config["resources"]["ordered"]
        order = ([e for e in entries if e["infra"].split("/")[1] != avoid_region] +
                 [e for e in entries if e["infra"].split("/")[1] == avoid_region]) if avoid_region else entries
        for e in order:
            if e["infra"] in self.unavailable:
                tried.append(e["infra"])
                if out:
                    out.write(f"Failed to acquire resources in {e['infra']}: InsufficientInstanceCapacity\n")
                continue
            return e, tried
        return None, tried

    # ---------------------------------------------------------------- managed jobs
    @sdk("jobs.launch")
    def _jobs_launch(self, task, name=None):
        self.calls.append(("jobs.launch", name))
        self.tasks.append(task)

        def req(out):
            with self._lock:
                jid = self._next_job
                self._next_job += 1
                self.managed[jid] = {"name": name, "task": task, "status": "STARTING", "recovery_count": 0,
                                     "entry": None, "cluster": f"{name}-{jid}", "running_polls": 0,
                                     "checkpoint": 0, "incarnations": [], "log": [], "failure_reason": None}
                self._provision(jid, out)
            if self.interrupt == "launch":
                raise KeyboardInterrupt
            return [jid], None
        return req

    def _provision(self, jid, out, avoid_region=None):
        j = self.managed[jid]
        entry, tried = self._place(j["task"], out, avoid_region)
        if entry is None:
            j["status"] = "FAILED_NO_RESOURCE"
            j["failure_reason"] = f"no capacity in {len(tried)} candidates"
            return
        j["entry"] = entry
        j["incarnations"].append(entry["infra"])
        n = int(j["task"].config.get("num_nodes") or 1)
        self.clusters[j["cluster"]] = {"infra": entry["infra"], "job": jid, "status": "UP", "nodes": ["UP"] * n}
        j["log"].append(f"(head, rank=0, pid=1) resuming from checkpoint step {j['checkpoint']}"
                        if j["checkpoint"] else "(head, rank=0, pid=1) starting from scratch")

    def _head_waits(self, task, log: list):
        """On a fresh cluster's head, rayctl's head runner waits for every node's raylet (simulated: the
        workers join `worker_join_s` after the head) before it submits: the alive count, or None when it
        gave up (its exit code is `head.EXIT_NODES`)."""
        from rayctl.providers.skypilot import head

        n = int(task.config.get("num_nodes") or 1)
        if n <= 1:
            self.submits.append({"task": task.name, "nodes_alive": 1})  # one node: submitted at once, as before
            return 1
        envs = task.config.get("envs") or {}
        timeout_s = float(envs.get("RAYCTL_NODES_TIMEOUT_S") or head.NODES_TIMEOUT_S)
        now = [0.0]
        joined = lambda: 1 + (n - 1 if self.worker_join_s is not None and now[0] >= self.worker_join_s  # noqa: E731
                              else 0)
        out = io.StringIO()
        alive = head.wait_for_nodes(n, joined, timeout_s=timeout_s, clock=lambda: now[0],
                                    sleep=lambda s: now.__setitem__(0, now[0] + s), out=out)
        log.extend(out.getvalue().splitlines())
        if alive is not None:
            self.submits.append({"task": task.name, "nodes_alive": alive})
            log.append(f"rayctl: submitted Ray job {task.name}-{len(self.submits)} on the cluster's head")
        return alive

    def _run_starts(self, jid) -> bool:
        """The task's `run` on a managed job's fresh cluster; False when the head runner gave up (the job
        fails with its exit code and the controller releases the cluster)."""
        from rayctl.providers.skypilot import head

        j = self.managed[jid]
        if self._head_waits(j["task"], j["log"]) is None:
            self.clusters.pop(j["cluster"], None)
            j["status"] = "FAILED"
            j["failure_reason"] = f"Job {jid} failed: user program exited with code {head.EXIT_NODES}"
            return False
        self.submits[-1]["infra"] = j["entry"]["infra"]
        return True

    def _record(self, jid):
        j = self.managed[jid]
        e = j["entry"]
        rec = {"job_id": jid, "job_name": j["name"], "status": j["status"], "recovery_count": j["recovery_count"],
               "failure_reason": j["failure_reason"], "current_cluster_name": j["cluster"]}
        if e is not None and j["status"] in ("RUNNING", "SUCCEEDED", "FAILED"):
            r = _Resources(e)
            names = {"use1-az1": "us-east-1a", "use1-az2": "us-east-1b", "use1-az4": "us-east-1c",
                     "usw2-az1": "us-west-2a", "usw2-az2": "us-west-2b"}
            n = int(j["task"].config.get("num_nodes") or 1)
            rec.update(cloud=r.cloud, region=r.region, zone=names.get(r.zone, r.zone),
                       cluster_resources_full=f"{n}x {r}")
        return rec

    def _step(self, jid):
        j = self.managed[jid]
        st = j["status"]
        if st in ("SUCCEEDED", "FAILED", "CANCELLED", "FAILED_NO_RESOURCE"):
            return
        if st == "CANCELLING":
            self.clusters.pop(j["cluster"], None)
            j["status"] = "CANCELLED"
            return
        if st == "STARTING":
            if self._run_starts(jid):
                j["status"] = "RUNNING"
            return
        if st == "RECOVERING":
            prev = j["entry"]["infra"].split("/")[1]
            self._provision(jid, None, avoid_region=prev)
            if j["status"] == "RECOVERING":
                j["recovery_count"] += 1
                if self._run_starts(jid):
                    j["status"] = "RUNNING"
            return
        if st == "RUNNING":
            j["running_polls"] += 1
            n = j["running_polls"]
            j["checkpoint"] += self.steps_per_poll
            j["log"].append(f'::rayctl:: {{"type": "progress", "unit": "steps", "done": {j["checkpoint"]}, '
                            f'"total": {self.steps_per_poll * (self.run_polls + 1)}}}')
            if n in self.preempt_worker_at_polls and len(self.clusters[j["cluster"]]["nodes"]) > 1:
                self.preempt_worker_at_polls.discard(n)
                c = self.clusters[j["cluster"]]
                c["nodes"][1] = "TERMINATED"  # a spot worker VM is gone; the head still runs
                c["status"] = "INIT"
                # SkyPilot's controller checks a multi-node cluster's status on every poll; not UP -> recovery,
                # and EAGER_NEXT_REGION cleans the partial cluster up before relaunching it elsewhere.
                self.clusters.pop(j["cluster"], None)
                j["status"] = "RECOVERING"
                j["log"].append("(controller) Cluster is preempted or failed (status: INIT). Recovering...")
                return
            if n in self.preempt_at_polls:
                self.preempt_at_polls.discard(n)
                self.clusters.pop(j["cluster"], None)  # the spot VM is gone
                j["status"] = "RECOVERING"
                j["log"].append("(controller) spot preemption detected; recovering")
                return
            if n >= self.run_polls:
                self.clusters.pop(j["cluster"], None)  # the controller releases the cluster
                if self.outcome == "SUCCEEDED" and self.final_metrics is not None:
                    j["log"].append("::rayctl:: " + json.dumps({"type": "metrics", **self.final_metrics}))
                elif self.outcome == "SUCCEEDED":
                    j["log"].append('::rayctl:: {"type": "metrics", "rows": 1000, "input_tokens": 5000, '
                                    f'"output_tokens": 700, "checkpoint": "step-{j["checkpoint"]}"}}')
                else:
                    leaked = " ".join(str(v) for v in (j["task"].config.get("secrets") or {}).values()
                                      if self.leak_secrets)
                    if leaked:
                        j["log"].append(f"my token is {leaked}")
                    j["log"].append(f"Traceback: RuntimeError: CUDA error (workload failed) {leaked}".rstrip())
                    j["failure_reason"] = f"user program exited with code 1 {leaked}".rstrip()
                j["status"] = self.outcome

    @sdk("jobs.queue_v2")
    def _jobs_queue(self, refresh, job_ids=None, name_match=None, fields=None):
        self.calls.append(("jobs.queue_v2", tuple(job_ids or ()), name_match))

        def req(out):
            with self._lock:
                if job_ids:
                    self._polls += 1
                    if isinstance(self.interrupt, tuple) and self.interrupt[0] == "poll" \
                            and self._polls == self.interrupt[1]:
                        self.interrupt = None
                        raise KeyboardInterrupt
                    if self.queue_error_at == self._polls:
                        self.queue_error_at = None
                        raise ConnectionError("API server at http://127.0.0.1:46580 is not reachable")
                    for jid in job_ids:
                        if jid in self.managed:
                            self._step(jid)
                    recs = [self._record(j) for j in job_ids if j in self.managed]
                else:
                    recs = [self._record(j) for j, m in self.managed.items()
                            if name_match is None or m["name"] == name_match]
                return recs, len(recs), {}, len(recs)
        return req

    @sdk("jobs.cancel")
    def _jobs_cancel(self, job_ids=None, name=None):
        self.calls.append(("jobs.cancel", tuple(job_ids or ()), name))

        def req(out):
            if self.cancel_fails:
                raise RuntimeError("jobs controller unreachable: ConnectionError aws_secret_access_key=abc123SECRET")
            with self._lock:
                ids = job_ids or [j for j, m in self.managed.items() if m["name"] == name]
                for jid in ids:
                    j = self.managed[jid]
                    if j["status"] not in ("SUCCEEDED", "FAILED", "CANCELLED", "FAILED_NO_RESOURCE"):
                        j["status"] = "CANCELLING"
        return req

    @sdk("jobs.tail_logs")
    def _jobs_tail_logs(self, name=None, job_id=None, follow=True, output_stream=None):
        self.calls.append(("jobs.tail_logs", job_id, follow))
        sent = 0
        deadline = time.monotonic() + 10
        while True:
            with self._lock:
                j = self.managed[job_id]
                lines = j["log"][sent:]
                sent += len(lines)
                done = j["status"] in ("SUCCEEDED", "FAILED", "CANCELLED", "FAILED_NO_RESOURCE")
            for ln in lines:
                output_stream.write(ln + "\n")
            if done or not follow or time.monotonic() > deadline:
                return 0 if j["status"] == "SUCCEEDED" else 100
            time.sleep(0.005)

    # ---------------------------------------------------------------- clusters
    @sdk("launch")
    def launch(self, task, cluster_name=None, idle_minutes_to_autostop=None, down=False):
        self.calls.append(("launch", cluster_name, idle_minutes_to_autostop, down))
        self.tasks.append(task)

        def req(out):
            entry, tried = self._place(task, out)
            if entry is None:
                # SkyPilot may leave a half-provisioned cluster behind in INIT.
                self.clusters[cluster_name] = {"infra": None, "status": "INIT", "job": None}
                raise ResourcesUnavailableError(f"Failed to provision all possible launchable resources. "
                                                f"Relax the task's resource requirements: {len(tried)} tried",
                                                failover_history=[RuntimeError(t) for t in tried])
            n = int(task.config.get("num_nodes") or 1)
            log = []
            alive = self._head_waits(task, log)
            if alive is not None:
                log.append("::rayctl:: {\"type\": \"metrics\", \"url\": \"http://10.0.0.5:8000\"}")
            self.clusters[cluster_name] = {"infra": entry["infra"], "status": "UP", "job": 1, "job_polls": 0,
                                           "job_status": "RUNNING" if alive is not None else "FAILED",
                                           "autostop": idle_minutes_to_autostop, "autodown": down,
                                           "nodes": ["UP"] * n, "log": log}
            if self.interrupt == "launch":
                raise KeyboardInterrupt
            return 1, _Handle(entry)
        return req

    @sdk("job_status")
    def job_status(self, cluster_name, job_ids=None):
        def req(out):
            c = self.clusters.get(cluster_name)
            if c is None:
                raise ClusterDoesNotExist(cluster_name)
            self._polls += 1
            if isinstance(self.interrupt, tuple) and self.interrupt[0] == "poll" and self._polls == self.interrupt[1]:
                self.interrupt = None
                raise KeyboardInterrupt
            c["job_polls"] += 1
            if c["job_polls"] >= self.run_polls and c["job_status"] == "RUNNING":
                c["job_status"] = self.outcome
            return {job_ids[0]: c["job_status"]}
        return req

    @sdk("tail_logs")
    def tail_logs(self, cluster_name, job_id, follow, output_stream=None):
        c = self.clusters.get(cluster_name)
        for ln in (c or {}).get("log", []):
            output_stream.write(ln + "\n")
        return 0

    @sdk("status")
    def status(self, cluster_names=None):
        def req(out):
            return [types.SimpleNamespace(name=n, status=c["status"]) for n, c in self.clusters.items()
                    if not cluster_names or n in cluster_names]
        return req

    @sdk("down")
    def down(self, cluster_name):
        self.calls.append(("down", cluster_name))

        def req(out):
            if self.down_fails:
                raise RuntimeError("botocore.exceptions.ClientError: UnauthorizedOperation for AKIAABCDEFGHIJKLMNOP")
            if cluster_name not in self.clusters:
                raise ClusterDoesNotExist(cluster_name)
            del self.clusters[cluster_name]
        return req

    @sdk("endpoints")
    def endpoints(self, cluster, port=None):
        def req(out):
            return {port: self.serve_endpoint} if cluster in self.clusters else {}
        return req
