"""RayResource against real Ray heads: no address means a local Ray of the step, never the cluster
`ray start` last recorded on the machine (alive or dead); a configured address that does not answer
fails within `connect_timeout_s`, naming the address."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.harness.processes import stop_process_group
from tests.harness.ray_head import running_ray_head

pytestmark = pytest.mark.e2e

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


def test_unreachable_configured_address_fails_within_the_timeout(recorded_head):
    head, env = recorded_head
    dead = head.address
    stop_process_group(head.pgid, grace_s=5)
    for settings, named in (
        ({"address": dead, "connect_timeout_s": 2}, dead),
        ({"address": f"ray://{dead}", "connect_timeout_s": 2}, f"ray://{dead}"),
    ):
        rc, output, _ = _step(env, 120, **settings)
        assert rc == 3, output[-3000:]
        failed = next(line for line in output.splitlines() if line.startswith("FAILED "))
        elapsed = float(failed.split()[1])
        assert 1.9 <= elapsed < 8, failed  # waited the configured 2 s, not Ray's minutes
        assert named in output
        assert "did not accept a connection within 2 s" in output
    # The environment variable sets the wait when the resource does not.
    rc, output, _ = _step({**env, "KINETICS_RAY_CONNECT_TIMEOUT_S": "1"}, 120, address=dead)
    assert rc == 3, output[-3000:]
    assert "within 1 s" in output, output[-3000:]
