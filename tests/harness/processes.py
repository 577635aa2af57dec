"""Processes the tests and benchmarks start themselves: a free loopback port, a clean stop, the CPU a
process used, and waiting for a line in its log."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_text(log: Path, text: str, timeout_s: float, proc: subprocess.Popen | None = None) -> float:
    """Until `text` is in the log a process writes (monotonic time it was seen); an error with the
    log's tail when `proc` ends first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return time.monotonic()
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process ended ({proc.returncode}) before {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"no {text!r} in {log} after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
