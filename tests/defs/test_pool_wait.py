"""A run whose `depth_maps` step waits for the `depth` pool must wait idle: Dagster 1.13's step loop
computes its sleep as `min(0, ...)` and so polls without sleeping, a core per waiting run
(kinetics_assets/defs/pool_wait.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.harness.processes import cpu_seconds, wait_for_text

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# A CPU-time threshold measured on a shared machine: end-to-end tier, beside the other process tests.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BLOCKED = "Step blocked by limit for pool depth"
WINDOW_S = 6.0


def test_a_step_waiting_for_its_pool_waits_idle(dagster_home, tmp_path):
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("http://127.0.0.1:9/part_0.tar.gz\n")  # never fetched: the step waits first
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "KINETICS_MANIFEST": str(manifest),
        "KINETICS_DATA_ROOT": str(tmp_path / "data"),
    }
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("depth", 1)
        # Another run holds the pool's one slot.
        assert storage.claim_concurrency_slot("depth", "another-run", "depth_maps").is_claimed

        log = tmp_path / "run.log"
        with log.open("w") as out:
            run = subprocess.Popen(
                [
                    str(BIN / "dagster"),
                    "asset",
                    "materialize",
                    "-m",
                    "kinetics_assets.definitions",
                    "--select",
                    "depth_maps",
                    "--partition",
                    "part_0",
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_text(log, BLOCKED, 180.0, run)
            before = cpu_seconds(run.pid)
            time.sleep(WINDOW_S)
            busy = cpu_seconds(run.pid) - before
            assert run.poll() is None, log.read_text()[-3000:]
            # Polling without sleep keeps a core busy (~WINDOW_S of CPU); waiting idle costs a few
            # slot checks.
            assert busy < 0.25 * WINDOW_S, f"the waiting run used {busy:.1f} s of CPU in {WINDOW_S:.0f} s"

            # Once the slot is free the step claims it and runs (here it fails: nothing was downloaded).
            storage.free_concurrency_slots_for_run("another-run")
            wait_for_text(log, 'Started execution of step "depth_maps"', 60.0, run)
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
