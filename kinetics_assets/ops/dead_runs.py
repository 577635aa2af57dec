"""Runs whose process was killed from outside, found and released.

A run process killed with SIGKILL (an OOM kill, a lost container) never reports its end: Dagster keeps
the run STARTED, and a step in a pool with a limit (depth_maps is in pool `depth`) keeps its slot,
so every later depth step waits for it forever. With the default run launcher Dagster's run
monitoring cannot see that the process is gone. The executor records the pid of the process that
runs the steps; a run whose recorded processes are all gone from this machine is dead, and releasing
it (marking it canceled, freeing its slots) lets the partition be re-run. The Lance table needs no
repair: a shard only becomes visible in its final commit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from collections.abc import Mapping

_IN_FLIGHT = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


@dataclass(frozen=True)
class DeadRun:
    run_id: str
    status: str
    partition: str | None
    pids: tuple[int, ...]


def run_pids(instance: dg.DagsterInstance, run_id: str) -> tuple[int, ...]:
    """Pids of the run's own processes: the one that started it (its RUN_START event, emitted from
    the run process before anything else, so a run killed right after it still has a pid) and those
    its executors recorded ("Executing steps ... (pid: N)" engine events). Engine events' own pids
    are not taken: a launcher (the daemon, the webserver) emits some of them and outlives the run.
    """
    pids = set()
    for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.RUN_START, dg.DagsterEventType.ENGINE_EVENT}):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.RUN_START:
            if event.pid is not None:
                pids.add(event.pid)
            continue
        data = event.engine_event_data
        value = data.metadata.get("pid") if data and data.metadata else None
        text = getattr(value, "value", value)
        if text is not None and str(text).isdigit():
            pids.add(int(str(text)))
    return tuple(sorted(pids))


def process_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    if Path("/proc/self/stat").exists():  # Linux: a killed child stays a zombie until reaped
        try:
            # The state letter follows the parenthesised command name.
            return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
        except (FileNotFoundError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """In-flight runs whose recorded processes are all gone from this machine.

    Only meaningful on the machine that ran them (the default run launcher's case). A run that has
    no pid yet (STARTING: launched, its process not yet running) is never reported: only the
    launcher knows that process.
    """
    dead = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=_IN_FLIGHT)):
        run = record.dagster_run
        pids = run_pids(instance, run.run_id)
        if pids and not any(process_alive(pid) for pid in pids):
            dead.append(DeadRun(run.run_id, run.status.value, _partitions_label(run.tags), pids))
    return dead


def _partitions_label(tags: Mapping[str, str]) -> str | None:
    """`key` for a one-partition run, `first...last` for a range run."""
    from kinetics_assets.ops.status import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG

    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]}...{tags.get(RANGE_END_TAG, '')}"
    return None


def release_run(instance: dg.DagsterInstance, run_id: str, reason: str) -> None:
    """Mark the run canceled and free the pool slots its steps still hold."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r} in the Dagster instance")
    if not run.is_finished:
        instance.report_run_canceled(run, message=reason)
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
