"""Shared fixtures: the real-clip folder, a throwaway Dagster instance, and one local Ray per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.harness.processes import free_loopback_port, stop_process_group

# Ray would otherwise rebuild the project in a fresh venv for its workers when run under `uv run`.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def real_videos_dir() -> Path:
    folder = os.environ.get("KINETICS_REAL_VIDEOS_DIR")
    if not folder:
        pytest.skip("KINETICS_REAL_VIDEOS_DIR not set: real clips unavailable")
    path = Path(folder)
    if not path.is_dir():
        pytest.skip(f"KINETICS_REAL_VIDEOS_DIR={folder} is not a folder: real clips unavailable")
    return path


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    """A fresh instance configured like the project's own `dagster_home/`."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray for every test that runs tasks in-process (Ray's start costs ~10 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=512 * 1024 * 1024, namespace="tests")
    yield ray
    ray.shutdown()


# ---------------------------------------------------------------------------------------------------
# Shared services: one Ray head that many processes join, and a PostgreSQL server started by .ci/run.


class RayHead:
    """A running single-node Ray cluster on loopback that other processes join with `client_env`."""

    def __init__(self, address: str, client_env: dict[str, str], temp_dir: Path, pgid: int):
        self.address = address
        self.client_env = client_env
        self.temp_dir = temp_dir
        self.pgid = pgid


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head` on 127.0.0.1 with token authentication, in its own process group, stopped
    (that group only, never a machine-wide `ray stop`) when the module's tests are done."""
    import secrets
    import subprocess
    import sys
    import tempfile

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
        ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
        f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats",
        f"--ray-client-server-port={free_loopback_port()}", f"--dashboard-port={free_loopback_port()}",
        f"--dashboard-agent-listen-port={free_loopback_port()}",
    ]
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"`ray start --head --port={port}` failed:\n{output[-3000:]}")
        address = f"127.0.0.1:{port}"
        yield RayHead(address, {**env, "RAY_ADDRESS": address}, temp_dir, proc.pid)
    finally:
        stop_process_group(proc.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """DSN of a throwaway PostgreSQL server on loopback (`.ci/run` starts one and sets it)."""
    url = os.environ.get("KINETICS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("KINETICS_TEST_POSTGRES_URL not set: no PostgreSQL server (.ci/run starts one on 127.0.0.1)")
    return url
