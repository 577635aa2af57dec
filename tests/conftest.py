"""Shared fixtures and the two test tiers.

The fast tier (the default, `pytest`) runs each test in its worker's process, on threads: in-process
executors, real Lance tables, threaded loopback HTTP servers (`tests/harness/http_server.py`); its
files are spread over up to four pytest-xdist workers. The end-to-end tier (`pytest -m e2e`) holds
every test that starts a process: Ray, Dagster's CLI, webserver and daemon, moto's S3 server,
PostgreSQL, the browser; it runs one test at a time. Two rules keep the fast tier fast: a test
outside `e2e` that asks for a service fixture fails collection, and one that starts a process at all
fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.harness.moto import running_moto_server
from tests.harness.ray_head import RayHead, running_ray_head

if TYPE_CHECKING:
    from collections.abc import Iterator

# `pytester` runs pytest inside a test: tests/test_tiers.py checks the tier rules below with it.
pytest_plugins = ["pytester"]

# Ray would otherwise rebuild the project in a fresh venv for its workers when run under `uv run`.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

REPO = Path(__file__).resolve().parent.parent

# Fixtures that start a process or need a server outside the test process: only `e2e` tests may use
# them, directly or through another fixture (pytest's closure of fixture names covers both).
SERVICE_FIXTURES = frozenset(
    {
        "ray_local",
        "ray_head",
        "postgres_url",
        "s3_server",
    }
)


# ---------------------------------------------------------------------------------------------------
# The two tiers.


def pytest_configure(config: pytest.Config) -> None:
    """The end-to-end tier runs in this process, one test at a time, whatever `-n` says: its Ray heads,
    servers and daemons miss their start-up timeouts when two of them share two cores. (xdist's own
    `pytest_configure` runs last and starts no worker once `dist` is "no".)"""
    expression = (config.option.markexpr or "").strip()
    if "e2e" in expression and expression != "not e2e":
        config.option.dist, config.option.tx, config.option.numprocesses = "no", [], 0


@pytest.hookimpl(tryfirst=True)  # before pytest's own `-m` deselection: the rule holds in either tier
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test outside the end-to-end tier that uses a service fixture is a collection error."""
    offenders = [
        f"{item.nodeid} uses {', '.join(sorted(SERVICE_FIXTURES.intersection(item.fixturenames)))}"
        for item in items
        if item.get_closest_marker("e2e") is None and SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    ]
    if offenders:
        listing = "\n  ".join(offenders)
        msg = (
            "tests outside the end-to-end tier use service fixtures (processes or servers); mark them "
            f"`pytest.mark.e2e` (module `pytestmark`) or use an in-process stand-in:\n  {listing}"
        )
        raise pytest.UsageError(msg)


# Dagster's in-process execution against a real instance mirrors a step's output into its compute
# log with a `tail` and a small orphan watcher: part of how an in-process run works, not a service.
_ALLOWED_CALLERS = (str(Path("dagster") / "_core" / "execution" / "compute_logs.py"),)
_STARTED = pytest.StashKey[list[str]]()


class ProcessStartedInFastTierError(AssertionError):
    pass


def _advice(nodeid: str, command: str) -> str:
    return (
        f"{nodeid} started a process ({command}): tests that start processes belong to the end-to-end "
        "tier; mark it `pytest.mark.e2e` (README, 'Development')"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """Outside `e2e`, starting a process (`subprocess.Popen`, which `subprocess.run`, Ray's start and
    Dagster's CLI all go through) fails the test, in its fixtures' set-up and tear-down too."""
    if item.get_closest_marker("e2e") is not None:
        return (yield)
    started: list[str] = []
    item.stash[_STARTED] = started
    original_init = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen, args: object, *rest: object, **kwargs: object) -> None:
        caller = sys._getframe(1).f_code.co_filename
        if caller.endswith(_ALLOWED_CALLERS):
            original_init(self, args, *rest, **kwargs)
            return
        started.append(repr(args)[:200])
        raise ProcessStartedInFastTierError(_advice(item.nodeid, started[-1]))

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    try:
        return (yield)
    finally:
        subprocess.Popen.__init__ = original_init  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """A fast-tier test whose code caught the refusal still fails, with the same message."""
    report = yield
    started = item.stash.get(_STARTED, [])
    if call.when == "call" and report.passed and started:
        report.outcome = "failed"
        report.longrepr = _advice(item.nodeid, started[0])
    return report


# ---------------------------------------------------------------------------------------------------
# In-process fixtures, for both tiers.


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


# ---------------------------------------------------------------------------------------------------
# Service fixtures, for the end-to-end tier only (SERVICE_FIXTURES): one of each per session.


@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray for every test that runs tasks in the test process (Ray's start costs ~10 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=512 * 1024 * 1024, namespace="tests")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """`ray start --head` on 127.0.0.1 with token authentication, in its own process group, that run
    processes join through `client_env`; stopped (that group only, never a machine-wide `ray stop`)
    at the end of the session."""
    with running_ray_head(num_cpus=2) as head:
        yield head


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server on a free loopback port (its endpoint URL); any credentials are accepted."""
    with running_moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """DSN of a throwaway PostgreSQL server on loopback (`.ci/run` starts one and sets it)."""
    url = os.environ.get("KINETICS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("KINETICS_TEST_POSTGRES_URL not set: no PostgreSQL server (.ci/run starts one on 127.0.0.1)")
    return url
