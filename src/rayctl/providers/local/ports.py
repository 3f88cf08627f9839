"""Free TCP ports for a new local head: its named ports and a block for its workers."""

from __future__ import annotations

import random
import socket

from ...errors import RayctlError

WORKER_PORTS = 200


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))  # free on every address, not just loopback
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


def worker_port_range() -> tuple[int, int]:
    """A free block below the kernel's ephemeral range and away from Ray's default 10002-19999."""
    rng = random.Random()
    for _ in range(30):
        lo = 20000 + rng.randrange(0, (32000 - 20000) // WORKER_PORTS) * WORKER_PORTS
        if all(port_free(p) for p in range(lo, lo + WORKER_PORTS)):
            return lo, lo + WORKER_PORTS - 1
    raise RayctlError("could not find 200 free TCP ports for the local Ray cluster's workers (20000-32000)")
