"""Talking to a Ray cluster's dashboard: its address, auth, a fast probe, and the Jobs API client.

Every function takes the dashboard address (`http(s)://[user:pw@]host:8265`), so the same
code serves the local head, an existing cluster and a cloud head. Credentials in the URL
never appear in what rayctl prints or stores (`Address.url`, `redact_url`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from ..errors import InputError
from ..redact import redact_url

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Address:
    """A dashboard URL taken apart: `url` without credentials (safe to print and store), and the
    credentials from `http://user:pw@host:8265` as an HTTP Basic `Authorization` header."""

    url: str
    host: str
    port: int | None
    basic: dict = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return self.url


def parse_address(address: str, where: str = "--target") -> Address:
    """`http(s)://[user:pw@]host[:port][/path]` -> Address; InputError for anything else.

    The error never repeats the credentials.
    """
    shown = redact_url(address)
    try:
        u = urllib.parse.urlsplit(str(address).strip())
        port = u.port
        host = u.hostname
    except ValueError as e:
        raise InputError(f"{where}: '{shown}' is not a valid URL ({e}); use an existing Ray cluster's "
                         "dashboard address such as http://head:8265") from None
    if u.scheme not in ("http", "https") or not host:
        raise InputError(f"{where}: '{shown}' is not a Ray dashboard address; use one such as http://head:8265")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    url = urllib.parse.urlunsplit((u.scheme, netloc, u.path.rstrip("/"), "", ""))
    basic = {}
    if u.username is not None or u.password is not None:
        import base64

        cred = f"{urllib.parse.unquote(u.username or '')}:{urllib.parse.unquote(u.password or '')}"
        basic = {"Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}
    return Address(url=url, host=host, port=port, basic=basic)


def _is_loopback(host: str) -> bool:
    return host.startswith("127.") or host in ("localhost", "::1")


def _local_cluster_for(url: str):
    """The rayctl-owned local cluster when `url` is its dashboard, else None."""
    try:
        from ..providers import local as local_provider

        state = local_provider.read_state()  # None when there is none (or it is torn or foreign)
    except OSError:  # unreadable state file: treat the address as not rayctl's own head
        return None
    return state if state is not None and state.address.rstrip("/") == url.rstrip("/") else None


def auth_headers(address: str) -> dict:
    """HTTP headers for a cluster's dashboard / Jobs API.

    - the rayctl-owned local cluster: its Ray auth token (`$RAYCTL_HOME/clusters/local/auth_token`);
    - otherwise the token from `RAY_AUTH_TOKEN` or the file in `RAY_AUTH_TOKEN_PATH`, when
      `RAY_AUTH_MODE=token` (an existing cluster with Ray token auth);
    - credentials in the URL (`http://user:pw@host:8265`, a proxy in front of the dashboard) as
      HTTP Basic auth; the Ray token then goes in `X-Ray-Authorization` (Ray's dashboard reads it
      when the proxy passes no `Authorization` on).
    """
    a = address if isinstance(address, Address) else parse_address(address)
    token = None
    local = _local_cluster_for(a.url)
    if local is not None:  # rayctl's own head: no proxy in front, only its token counts
        from ..providers import local as local_provider

        return local_provider.auth_headers(local)
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        token = os.environ.get("RAY_AUTH_TOKEN")
        if not token and os.environ.get("RAY_AUTH_TOKEN_PATH"):
            try:
                with open(os.path.expanduser(os.environ["RAY_AUTH_TOKEN_PATH"])) as f:
                    token = f.read().strip() or None
            except OSError:
                token = None
    headers = dict(a.basic)
    if token:
        headers["X-Ray-Authorization" if headers else "Authorization"] = f"Bearer {token}"
    return headers


def _get(address: str, path: str, timeout: float = PROBE_TIMEOUT_S):
    a = address if isinstance(address, Address) else parse_address(address, "address")
    req = urllib.request.Request(a.url + path, headers=auth_headers(a))
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(a.host) else []
    with urllib.request.build_opener(*handlers).open(req, timeout=timeout) as r:
        return json.loads(r.read().decode() or "null")


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """The cluster's `/api/version`, or a clear error within `timeout` seconds."""
    a = parse_address(address, "address")
    address = a.url  # what errors show: never the credentials
    try:
        v = _get(a, "/api/version", timeout)
    except urllib.error.HTTPError as e:
        hint = (" The cluster uses token auth: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
                "RAY_AUTH_TOKEN_PATH), or put user:password in the URL for a proxy with basic auth."
                if e.code in (401, 403) else "")
        raise InputError(f"the Ray cluster at {address} answered HTTP {e.code} on /api/version; is this "
                         f"a Ray dashboard address (http://HEAD:8265)?{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        why = redact_url(getattr(e, "reason", e))
        raise InputError(f"cannot reach a Ray cluster at {address}: {why}. Check the address (the head's "
                         "dashboard, e.g. http://HEAD:8265) and that the cluster is up.") from None
    except ValueError:
        raise InputError(f"{address} answered, but not like a Ray dashboard (no JSON on /api/version)") from None
    if not isinstance(v, dict) or "ray_version" not in v:
        raise InputError(f"{address} answered, but not like a Ray dashboard (no ray_version on /api/version)")
    return v


def client(address: str):
    """A Ray `JobSubmissionClient` for `address`, after a fast reachability probe.

    Auth travels as explicit headers (`auth_headers`): the process's RAY_AUTH_* settings are
    neither needed nor changed.
    """
    a = parse_address(address, "address")
    probe(address)
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise InputError("submitting Ray jobs needs Ray: pip install 'rayctl[local]'") from None
    _quiet_ray_logs()
    try:
        return JobSubmissionClient(a.url, headers=auth_headers(a) or None)
    except (ConnectionError, RuntimeError) as e:
        raise InputError(f"cannot use the Ray Jobs API at {a.url}: {redact_url(e)}") from None


def _quiet_ray_logs() -> None:
    import logging

    if not os.environ.get("RAYCTL_DEBUG"):
        for name in ("ray", "ray.dashboard", "ray.dashboard.modules.dashboard_sdk"):
            logging.getLogger(name).setLevel(logging.WARNING)
