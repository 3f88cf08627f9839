"""Secrets on their way to a job: workload.env names that hold credentials never ride in a runtime env
that others can read, when a cluster on this machine lets rayctl hand them over in a file.

`with_secrets` moves them into a 0600 file under `$RAYCTL_HOME/secrets/` that the job's
entrypoint (`_SECRET_EXEC`) reads, deletes, and execs the real command with; on an existing
cluster a local file cannot reach, they stay in the runtime env and the user is warned.
`remove_secrets_file` deletes a file the job never read (it did not start, or was stopped).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path

from ..settings import rayctl_home
from ..redact import redact_url

# Runs as the job's entrypoint on a cluster on this machine: reads the run's secrets file
# (0600), deletes it, puts the values in the environment and execs the real entrypoint.
_SECRET_EXEC = """import json, os, sys
p = sys.argv[1]
try:
    f = open(p)
except FileNotFoundError:
    sys.exit("rayctl: the job's secrets file " + p + " is gone (read by an earlier start of this job, "
             "or removed); launch the run again")
with f:
    d = json.load(f)
os.unlink(p)
os.environ.update(d)
os.execv("/bin/sh", ["/bin/sh", "-c", sys.argv[2]])
"""


def split_secrets(env_vars: dict) -> tuple[dict, dict]:
    """(env vars without the secrets, the secrets): entries redact.is_secret says hold credentials
    (a credential-like name, or a URL with user:password@), as the cloud path splits them."""
    from ..redact import is_secret

    plain = {k: v for k, v in env_vars.items() if not is_secret(str(k), v)}
    return plain, {k: str(v) for k, v in env_vars.items() if is_secret(str(k), v)}


def secrets_dir() -> Path:
    d = rayctl_home() / "secrets"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    return d


def secrets_file(run_id: str) -> Path:
    return rayctl_home() / "secrets" / f"{run_id}.json"


def _write_secrets_file(run_id: str, secret: dict) -> Path:
    import json

    path = secrets_dir() / f"{run_id}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(secret, f)
    return path


def remove_secrets_file(run_id: str) -> None:
    """Delete the run's secrets file if the job has not (it never started, or was stopped first)."""
    with contextlib.suppress(OSError):
        secrets_file(run_id).unlink()


def with_secrets(spec, run_id: str, extra_env: dict, secrets_via: str, address: str, rep):
    """(spec to submit, extra env): workload.env secrets moved out of the runtime env (`file`), or
    left in it with a warning (`runtime_env`, an existing cluster a local file cannot reach)."""
    import shlex

    runtime_env = dict(spec.runtime_env or {})
    env_vars = dict(runtime_env.get("env_vars") or {})
    plain, secret = split_secrets(env_vars)
    extra_plain, extra_secret = split_secrets(extra_env)
    secret.update({k: v for k, v in extra_secret.items() if k not in secret})
    if not secret:
        return spec, extra_env
    if secrets_via != "file":
        rep.warn(f"the secrets in workload.env ({', '.join(sorted(secret))}) travel in the job's runtime_env on "
                 f"the existing Ray cluster at {redact_url(address)}: anyone who can read that cluster's "
                 "dashboard (GET /api/jobs/) can read them, unless the cluster has Ray token auth "
                 "(RAY_AUTH_MODE=token; see docs/launch.md)")
        return spec, extra_env
    path = _write_secrets_file(run_id, secret)
    runtime_env["env_vars"] = plain
    entry = (f"{shlex.quote(sys.executable)} -c {shlex.quote(_SECRET_EXEC)} {shlex.quote(str(path))} "
             f"{shlex.quote(spec.entrypoint)}")
    return dataclasses.replace(spec, runtime_env=runtime_env, entrypoint=entry), extra_plain

