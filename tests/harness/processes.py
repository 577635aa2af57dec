"""Servers the tests and benchmarks start themselves: a free loopback port, and a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import time


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_group(pgid: int, grace_s: float = 15.0, leader=None) -> None:
    """SIGTERM a process group we started, then SIGKILL whatever is left after `grace_s`.
    `leader`, the group's `Popen` when it is our child, is reaped so it does not linger as a zombie."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if leader is not None:
                leader.poll()
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
