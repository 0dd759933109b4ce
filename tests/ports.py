"""A loopback port for a server a test starts in another process.

Port 0 would hand out an ephemeral port, from the range the kernel also gives to outgoing
connections: under a parallel suite, a client socket of another test can hold that port by the time
the server binds it (a Prefect server then exits with 3). So pick below the ephemeral range, at
random (xdist workers pick independently), and only a port that binds now.
"""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20000, 32000  # below Linux's default ip_local_port_range (32768-60999)


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, outside the ephemeral range."""
    for _ in range(200):
        port = random.randint(LOW, HIGH)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOW} and {HIGH}")
