"""Ports for the workload tests' own servers (the cluster itself is the session's `local_cluster`)."""

from __future__ import annotations

import socket

HOST = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]
