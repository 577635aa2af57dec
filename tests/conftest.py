"""Shared fixtures: the real-clip folder, a throwaway Dagster instance, and one local Ray per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.harness.ray_head import running_ray_head

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


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head` on 127.0.0.1 with token authentication, in its own process group, stopped
    (that group only, never a machine-wide `ray stop`) when the module's tests are done."""
    with running_ray_head(num_cpus=2) as head:
        yield head


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """DSN of a throwaway PostgreSQL server on loopback (`.ci/run` starts one and sets it)."""
    url = os.environ.get("KINETICS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("KINETICS_TEST_POSTGRES_URL not set: no PostgreSQL server (.ci/run starts one on 127.0.0.1)")
    return url
