"""The local cluster's Ray token auth (`RAY_AUTH_MODE=token`).

The token is a random secret in `auth_token` beside `state.json` (mode 0600, created
once, never printed); Ray's processes read it from `RAY_AUTH_TOKEN_PATH`. rayctl's own
clients send it as an `Authorization: Bearer` header (`auth_headers()`); without it the
dashboard and the Jobs API answer 401/403 to anyone else on this machine. A node joining
the cluster (`ray start --address=GCS`) needs the environment `ray_env()` gives.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .state import LocalCluster

AUTH_MODE = "token"
AUTH_TOKEN_FILE = "auth_token"


def ensure_auth_token(cdir: Path) -> Path:
    """The cluster's Ray auth token file (0600), created with a fresh random token if missing."""
    path = cdir / AUTH_TOKEN_FILE
    cdir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if (path.stat().st_mode & 0o777) != 0o600:
            os.chmod(path, 0o600)
        if path.read_text().strip():
            return path
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


def read_auth_token(c: LocalCluster) -> str | None:
    if not c.auth_token_path:
        return None
    try:
        return Path(c.auth_token_path).read_text().strip() or None
    except OSError:
        return None


def auth_headers(c: LocalCluster) -> dict:
    """HTTP headers for the cluster's dashboard / Jobs API (the bearer token; empty when auth is off)."""
    token = read_auth_token(c)
    return {"Authorization": f"Bearer {token}"} if token else {}


def ray_env(c: LocalCluster) -> dict:
    """Environment for a Ray process (driver, `ray` CLI, joining node) that talks to this cluster."""
    if not c.auth_token_path:
        return {"RAY_AUTH_MODE": "disabled"}
    return {"RAY_AUTH_MODE": AUTH_MODE, "RAY_AUTH_TOKEN_PATH": c.auth_token_path}
