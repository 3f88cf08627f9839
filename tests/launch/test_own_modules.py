"""rayctl's own modules are never optional: a failed import of one is a bug that says so (exit 1),
never a silent skip. `rayctl down --all` once returned 0 with the cloud teardown skipped, and
`rayctl down NAME` said there was no such cluster, when the SkyPilot provider failed to import."""

from __future__ import annotations

import os
import subprocess
import sys

# As if rayctl.providers.skypilot.provider could not be imported (a broken install).
BROKEN = ("import sys; sys.modules['rayctl.providers.skypilot.provider'] = None; "
          "from rayctl.cli.main import main; main(sys.argv[1:])")


def _rayctl_broken(rayctl_home, *args):
    # Its own (empty) local cluster folder: `down --all` must not stop the session's shared head.
    env = dict(os.environ, RAYCTL_HOME=str(rayctl_home),
               RAYCTL_LOCAL_CLUSTER_DIR=str(rayctl_home / "clusters" / "local"))
    return subprocess.run([sys.executable, "-c", BROKEN, *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_down_all_never_skips_the_cloud_teardown(rayctl_home):
    p = _rayctl_broken(rayctl_home, "down", "--all")
    assert p.returncode == 1, p
    assert "rayctl: internal error: ModuleNotFoundError" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_down_of_a_cloud_cluster_names_the_failed_import(rayctl_home):
    p = _rayctl_broken(rayctl_home, "down", "rayctl-some-cluster")
    assert p.returncode == 1, p
    assert "rayctl: internal error: ModuleNotFoundError" in p.stderr and "no cluster" not in p.stderr, p.stderr
