"""A running single-node Ray cluster on loopback, as a shared cluster would be run, that other
processes join with `client_env`. Used by the tests and the benchmarks."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.processes import free_loopback_port, stop_process_group


@dataclass(frozen=True)
class RayHead:
    address: str
    client_env: dict[str, str]
    temp_dir: Path
    pgid: int


@contextmanager
def running_ray_head(num_cpus: int = 2) -> Iterator[RayHead]:
    """`ray start --head` on 127.0.0.1 with token authentication, in its own process group, stopped
    (that group only, never a machine-wide `ray stop`) on exit."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    # Ray's socket paths live under the temp dir and have a length limit: keep it short.
    temp_dir = Path(tempfile.mkdtemp(prefix="rh"))
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
        if proc.returncode != 0:
            raise RuntimeError(f"`ray start --head --port={port}` failed:\n{output[-3000:]}")
        address = f"127.0.0.1:{port}"
        yield RayHead(address, {**env, "RAY_ADDRESS": address}, temp_dir, proc.pid)
    finally:
        stop_process_group(proc.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)
