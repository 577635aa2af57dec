"""RayResource against real Ray heads: no address means a local Ray of the step, never the cluster
`ray start` last recorded on the machine (alive or dead); a configured address that does not answer
fails within `connect_timeout_s`, naming the address (in this process: the resource gives up before
it starts or joins any Ray)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest
import ray  # noqa: F401 - loaded before any step's clock starts, as STEP loads it

from resources import RayResource
from tests.harness.processes import free_loopback_port, stop_process_group
from tests.harness.ray_head import running_ray_head

REPO = Path(__file__).resolve().parents[2]

# One asset that needs the resource and reports which GCS the step's Ray talks to.
STEP = textwrap.dedent(
    """
    import json, sys, time
    import dagster as dg
    import ray
    from resources import RayResource

    @dg.asset
    def where(ray_cluster: RayResource) -> str:
        return ray.get_runtime_context().gcs_address

    settings = json.loads(sys.argv[1])
    started = time.monotonic()
    try:
        result = dg.materialize([where], resources={"ray_cluster": RayResource(**settings)}, raise_on_error=False)
    except Exception as exc:  # resource set-up errors surface here
        print("FAILED", f"{time.monotonic() - started:.2f}", exc, flush=True)
        sys.exit(3)
    elapsed = time.monotonic() - started
    if result.success:
        print("GCS", result.output_for_node("where"), f"{elapsed:.2f}", flush=True)
    else:
        errors = [e.event_specific_data.error.to_string() for e in result.all_events if e.is_failure]
        print("FAILED", f"{elapsed:.2f}", " ".join(errors), flush=True)
        sys.exit(3)
    """
)


@pytest.fixture
def recorded_head():
    """A `ray start --head` on 127.0.0.1 that is recorded as the machine's current cluster in a private
    Ray temp folder (RAY_TMPDIR), in its own process group; yields the head and the environment of a
    step process (no address, no connect timeout: the resource's defaults)."""
    with running_ray_head(num_cpus=1, private_tmpdir=True) as head:
        assert head.recorded is not None
        assert head.recorded.endswith(":" + head.address.rsplit(":", 1)[1]), (
            f"the head did not record itself: {head.recorded!r}"
        )
        skip = {"RAY_ADDRESS", "KINETICS_RAY_CONNECT_TIMEOUT_S"}
        yield head, {k: v for k, v in head.client_env.items() if k not in skip}


def _step(env: dict[str, str], timeout_s: float, **settings) -> tuple[int, str, float]:
    import json

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", STEP, json.dumps(settings)],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def _gcs_line(output: str) -> list[str]:
    line = next((line for line in output.splitlines() if line.startswith("GCS ")), None)
    assert line is not None, output[-3000:]
    return line.split()


@pytest.mark.e2e
def test_no_address_starts_a_local_ray_not_the_recorded_head_alive_or_dead(recorded_head):
    head, env = recorded_head
    # Alive: Ray's default would join it silently; the step must run on a Ray of its own.
    rc, output, _ = _step(env, 300, num_cpus=1)
    assert rc == 0, output[-3000:]
    _, gcs, _ = _gcs_line(output)
    assert gcs.rsplit(":", 1)[1] != str(head.address.rsplit(":", 1)[1])
    assert "a local Ray started for this step" in output
    # Dead without `ray stop`: the record stays behind; Ray's default would wait minutes on it.
    stop_process_group(head.pgid, grace_s=5)
    rc, output, _wall = _step(env, 300, num_cpus=1)
    assert rc == 0, output[-3000:]
    _, gcs, _ = _gcs_line(output)
    assert gcs.rsplit(":", 1)[1] != str(head.address.rsplit(":", 1)[1])
    assert "Connecting to existing Ray cluster" not in output


def _step_here(**settings) -> tuple[str, float]:
    """The step of STEP in this process, for an address that must fail: (the error, seconds taken)."""

    @dg.asset
    def where(ray_cluster: RayResource) -> str:
        return "joined"

    started = time.monotonic()
    try:
        result = dg.materialize([where], resources={"ray_cluster": RayResource(**settings)}, raise_on_error=False)
    except Exception as exc:  # noqa: BLE001 - resource set-up errors surface here, as in STEP
        return str(exc), time.monotonic() - started
    elapsed = time.monotonic() - started
    assert not result.success, "the step joined an address nothing listens on"
    return " ".join(e.event_specific_data.error.to_string() for e in result.all_events if e.is_failure), elapsed


def test_unreachable_configured_address_fails_within_the_timeout(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("KINETICS_RAY_CONNECT_TIMEOUT_S", raising=False)
    dead = f"127.0.0.1:{free_loopback_port()}"  # nothing listens there
    for settings, named in (
        ({"address": dead, "connect_timeout_s": 2}, dead),
        ({"address": f"ray://{dead}", "connect_timeout_s": 2}, f"ray://{dead}"),
    ):
        error, elapsed = _step_here(**settings)
        assert 1.9 <= elapsed < 8, (elapsed, error)  # waited the configured 2 s, not Ray's minutes
        assert named in error
        assert "did not accept a connection within 2 s" in error
    # The environment variable sets the wait when the resource does not.
    monkeypatch.setenv("KINETICS_RAY_CONNECT_TIMEOUT_S", "1")
    error, _ = _step_here(address=dead)
    assert "within 1 s" in error, error
