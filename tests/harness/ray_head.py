"""A running single-node Ray cluster on loopback, as a shared cluster would be run, that other
processes join with `client_env`. The one Ray-head starter of the tests, soaks and benchmarks."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.harness.processes import free_loopback_port, stop_process_group

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass(frozen=True)
class RayHead:
    address: str
    client_env: dict[str, str]
    temp_dir: Path
    pgid: int
    # The GCS address Ray recorded as the machine's current cluster (`private_tmpdir` heads only).
    recorded: str | None = None


def _processes_mentioning(text: str) -> list[int]:
    """Processes whose command line names `text` (a temp folder made here, so only this head's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _stop(pgid: int, leader: subprocess.Popen, temp_dir: Path) -> None:
    """The head's process group, then its workers (Ray starts them in sessions of their own; their
    command lines name the head's temp folder)."""
    stop_process_group(pgid, leader=leader)
    for pid in _processes_mentioning(str(temp_dir)):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def running_ray_head(
    num_cpus: int = 2,
    *,
    private_tmpdir: bool = False,
    attempts: int = 3,
) -> Iterator[RayHead]:
    """`ray start --head` on 127.0.0.1, in its own process group, stopped (that group and its
    workers only, never a machine-wide `ray stop`) on exit.

    Token authentication is on: joiners use `client_env` (the token, the address, and the setting that
    keeps 127.0.0.1 from being swapped for the machine's address). `private_tmpdir` gives the head its
    own RAY_TMPDIR, so the cluster it records as the machine's current one is private to it. Ray gives
    its raylet a fixed 30 s to come up, which a busy machine can miss: `attempts` tries."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    for attempt in range(1, attempts + 1):
        # Ray's socket paths live under the temp dir and have a length limit: keep it short.
        root = Path(tempfile.mkdtemp(prefix="rh"))
        temp_dir = root / "ray" if private_tmpdir else root
        port = free_loopback_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
            # Single node: advertise 127.0.0.1 rather than the machine's address.
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
            RAY_USAGE_STATS_ENABLED="0",
        )
        if private_tmpdir:
            env["RAY_TMPDIR"] = str(root)
        command = [
            ray_cli,
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--ray-client-server-port={free_loopback_port()}",
            f"--dashboard-port={free_loopback_port()}",
            f"--dashboard-agent-listen-port={free_loopback_port()}",
        ]
        proc = subprocess.Popen(
            command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            output, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        if proc.returncode != 0:
            _stop(proc.pid, proc, root)
            shutil.rmtree(root, ignore_errors=True)
            if attempt == attempts:
                msg = f"`ray start --head --port={port}` failed ({attempts} tries):\n{output[-3000:]}"
                raise RuntimeError(msg)
            continue
        try:
            address = f"127.0.0.1:{port}"
            recorded = None
            if private_tmpdir:
                # What Ray's default (`address=None`) would join: the head's GCS, as Ray recorded it.
                recorded = (temp_dir / "ray_current_cluster").read_text().strip()
            yield RayHead(address, {**env, "RAY_ADDRESS": address}, temp_dir, proc.pid, recorded)
        finally:
            _stop(proc.pid, proc, root)
            shutil.rmtree(root, ignore_errors=True)
        return
