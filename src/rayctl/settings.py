"""Where rayctl keeps things, in one place (imported by every layer, so it imports nothing of rayctl).

- `rayctl_home()`: `$RAYCTL_HOME`, default `~/.rayctl`: the ledger, logs, schedules, the
  local cluster's state, secrets files, the refreshed catalog and price caches.
- `package_dir()`: the installed `rayctl` package, shipped to clusters as a py_module.
- `shipped_dir()`: the price data shipped with the package (wheel: `rayctl/pricing`;
  checkout: `pricing/` at the repository root).
- `skypilot_cache_dir()`: SkyPilot's own catalog cache (`~/.sky/catalogs/v8`).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def rayctl_home() -> Path:
    return Path(os.environ.get("RAYCTL_HOME") or Path.home() / ".rayctl").expanduser()


def package_dir() -> str:
    return str(_PACKAGE)


def shipped_dir() -> Path:
    for cand in (_PACKAGE / "pricing", _PACKAGE.parents[1] / "pricing"):
        if cand.is_dir():
            return cand
    return _PACKAGE / "pricing"


def skypilot_cache_dir() -> Path:
    return Path(os.environ.get("SKY_RUNTIME_DIR") or Path.home()).expanduser() / ".sky" / "catalogs" / "v8"
