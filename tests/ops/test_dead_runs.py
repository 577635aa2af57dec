"""`find_dead_runs` on a real instance: a run process killed before its executor recorded a pid
(between RUN_START and "Executing steps ... (pid: N)") must still be found by the pid of its
RUN_START event, and a live one must not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import pytest

from kinetics_assets.ops.dead_runs import find_dead_runs, process_alive, release_run, run_pids

pytestmark = pytest.mark.e2e

# A run process that gets as far as RUN_START (it reports the event the way a run does, from its own
# process) and then stops, like one SIGKILLed before its executor starts.
_RUN_PROCESS = textwrap.dedent("""
    import os, sys, time
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job(name="stalled_job"), tags={"dagster/partition": "part_7"})
        instance.report_dagster_event(
            dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name, pid=os.getpid()),
            run_id=run.run_id,
        )
        print(run.run_id, flush=True)
        time.sleep(600)
""")


def _wait_dead(pid: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while process_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive after SIGKILL"
        time.sleep(0.05)


def test_a_run_killed_before_its_executor_started_is_found_by_its_run_start_pid(dagster_home):
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    child = subprocess.Popen([sys.executable, "-c", _RUN_PROCESS], env=env, stdout=subprocess.PIPE, text=True)
    try:
        run_id = child.stdout.readline().strip()
        assert run_id, "the run process did not start a run"
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
            assert run_pids(instance, run_id) == (child.pid,)
            assert find_dead_runs(instance) == []  # its process is alive

            child.send_signal(signal.SIGKILL)
            _wait_dead(child.pid)
            dead = find_dead_runs(instance)
            assert [(d.run_id, d.status, d.partition, d.pids) for d in dead] == [
                (run_id, "STARTED", "part_7", (child.pid,))
            ]

            release_run(instance, run_id, "killed before its executor started")
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.CANCELED
            assert find_dead_runs(instance) == []
    finally:
        child.kill()
        child.wait()
