"""What a run costs while its step waits for a pool slot: CPU seconds of the run process per second
of waiting, and the delay from the slot being freed to the step starting. Dagster's own wait (it
sleeps `min(0, time to next check)`, so never) against the idle wait the code location installs
(kinetics_assets/defs/pool_wait.py), alternated in one run of this script on a fresh instance.

    uv run python bench/bench_pool_wait.py [--repeats 3] [--wait-s 30] [--json bench/results/pool_wait.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.processes import cpu_seconds, wait_for_text  # noqa: E402

BIN = Path(sys.executable).parent
BLOCKED = "Step blocked by limit for pool bench_pool"
STARTED = 'Started execution of step "waits"'


def measure(home: Path, mode: str, wait_s: float, work: Path) -> dict:
    """One run of the asset while another run holds the slot for `wait_s`, then frees it."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "BENCH_POOL_WAIT": mode, "PYTHONPATH": str(REPO)}
    log = work / f"{mode}-{time.monotonic_ns()}.log"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        if not storage.claim_concurrency_slot("bench_pool", "holder", "holder_step").is_claimed:
            raise RuntimeError("the holder could not claim the pool's slot")
        with log.open("w") as out:
            run = subprocess.Popen(
                [
                    str(BIN / "dagster"),
                    "asset",
                    "materialize",
                    "-f",
                    str(REPO / "bench" / "pool_wait_location.py"),
                    "--select",
                    "waits",
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_text(log, BLOCKED, 300.0, run)
            cpu0, t0 = cpu_seconds(run.pid), time.monotonic()
            time.sleep(wait_s)
            cpu = cpu_seconds(run.pid) - cpu0
            waited = time.monotonic() - t0
            storage.free_concurrency_slots_for_run("holder")
            freed = time.monotonic()
            started = wait_for_text(log, STARTED, 120.0, run)
            run.wait(timeout=120)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    return {
        "mode": mode,
        "cpu_s_per_s_waiting": round(cpu / waited, 3),
        "waited_s": round(waited, 1),
        "start_delay_after_free_s": round(started - freed, 2),
        "returncode": run.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wait-s", type=float, default=30.0, help="how long the slot is held while the run waits")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    with tempfile.TemporaryDirectory(prefix="bench-pool-wait-") as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.event_log_storage.set_concurrency_slots("bench_pool", 1)
        rows = []
        for _ in range(args.repeats):
            for mode in ("dagster", "idle"):
                row = measure(home, mode, args.wait_s, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"dagster {dg.__version__}",
        "load_before": load_before,
        "rows": rows,
    }
    for mode in ("dagster", "idle"):
        mine = [r for r in rows if r["mode"] == mode]
        summary[mode] = {
            "cpu_s_per_s_waiting_median": statistics.median(r["cpu_s_per_s_waiting"] for r in mine),
            "start_delay_after_free_s_median": statistics.median(r["start_delay_after_free_s"] for r in mine),
        }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
