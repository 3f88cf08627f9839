"""The crontab line of a schedule: one tagged line (see `rayctl.schedule.crontab`) that runs
`python -m rayctl schedule run NAME --recipe /abs/recipe.yaml` with absolute paths, its
own environment (RAYCTL_HOME, PATH, and PYTHONPATH/RAYCTL_CATALOG when set at install
time, plus any `--env KEY=VALUE`) and its output appended to the schedule's log
`$RAYCTL_HOME/logs/schedule-NAME.log`.
"""

from __future__ import annotations

import os
import re
import shlex
import sys

from . import crontab
from .registry import Schedule
from ..settings import rayctl_home
from ..errors import InputError
from ..redact import is_secret

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Variables a schedule's line always sets itself; --env may not override them.
_OWN_ENV = ("RAYCTL_HOME", "PATH")
# Variables copied from the installing shell when set, so cron sees what the user saw.
_CARRIED_ENV = ("PYTHONPATH", "RAYCTL_CATALOG")


def parse_env(pairs) -> dict:
    env: dict = {}
    for p in pairs or ():
        key, sep, val = p.partition("=")
        if not sep or not _ENV_KEY.match(key):
            raise InputError(f"--env '{p}': expected KEY=VALUE with KEY a shell variable name")
        if key in _OWN_ENV:
            raise InputError(f"--env '{p}': {key} is set by rayctl for every scheduled run")
        if any(ord(c) < 32 for c in val):
            raise InputError(f"--env '{p}': the value holds a line break or control character")
        if is_secret(key, val):
            raise InputError(f"--env {key}=...: looks like a credential, and a crontab line and rayctl's schedule "
                             "registry keep --env values in plain text. Put it in the recipe's workload.env "
                             "instead (a file you control; rayctl hands secrets to the job without writing them "
                             "anywhere else), or in your own environment file that the job reads")
        env[key] = val
    return env


def line_env(extra: dict | None = None) -> dict:
    """The environment a scheduled run gets: fixed, absolute, independent of cron's."""
    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    path = [exe_dir] + [d for d in ("/usr/local/bin", "/usr/bin", "/bin") if d != exe_dir]
    env = {"RAYCTL_HOME": str(rayctl_home().resolve()), "PATH": ":".join(path)}
    for key in _CARRIED_ENV:
        val = os.environ.get(key)
        if val:
            if key == "PYTHONPATH":
                val = ":".join(os.path.abspath(p) for p in val.split(":") if p)
            elif key == "RAYCTL_CATALOG":
                val = os.path.abspath(os.path.expanduser(val))
            env[key] = val
    env.update(extra or {})
    return env


def build_line(s: Schedule) -> str:
    """The crontab line for `s`: cron fields, [user], command, tag."""
    envbin = "/usr/bin/env" if os.path.exists("/usr/bin/env") else "env"
    argv = [envbin, *(f"{k}={v}" for k, v in s.env.items()),
            os.path.abspath(sys.executable), "-m", "rayctl", "schedule", "run", s.name, "--recipe", s.recipe]
    log = os.path.join(s.env["RAYCTL_HOME"], "logs", f"schedule-{s.name}.log")
    command = f"{shlex.join(argv)} >>{shlex.quote(log)} 2>&1"
    command = command.replace("%", "\\%")  # cron turns a bare % into a newline
    command += f" {crontab.tag(s.name)}"
    if len(command.encode()) > crontab.MAX_COMMAND:
        raise InputError(f"the crontab command for schedule '{s.name}' would be {len(command.encode())} bytes; "
                         f"cron refuses commands of {crontab.MAX_COMMAND + 1} bytes or more. Shorten the paths "
                         "(recipe, RAYCTL_HOME, PYTHONPATH) or the --env values")
    user = f" {s.cron_user}" if s.cron_user else ""
    return f"{s.cron}{user} {command}"
