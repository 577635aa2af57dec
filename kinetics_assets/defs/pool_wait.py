"""A step waiting for a pool slot (`depth`, `transcripts`) waits idle.

Dagster 1.13's step loop sleeps until the next slot check for `min(0, time to it)` seconds, which is
never more than 0: a run whose model step waits for its pool polls the instance without pause, a
core and a stream of storage queries per waiting run, while the run that holds the slot needs those
cores (dagster-io/dagster#20367 found this and was closed unmerged). With `max_concurrent_runs: 4`
and one slot per pool, three runs can be waiting at once. The wait below is until the earliest
check of a step that is still waiting, which Dagster spaces from 1 s up to 15 s.
"""

from __future__ import annotations

import time

from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

_original = InstanceConcurrencyContext.interval_to_next_pending_claim_check


def _interval_to_next_pending_claim_check(self: InstanceConcurrencyContext) -> float:
    pending = getattr(self, "_pending_claims", None)
    timeouts = getattr(self, "_pending_timeouts", None)
    if pending is None or timeouts is None:  # a Dagster that changed these: its own answer
        return _original(self)
    due = [timeouts[step] for step in pending if step in timeouts]
    if not due:
        return 0.0
    return max(0.0, min(due) - time.time())


def wait_idle_for_pool_slots() -> None:
    """Install the idle wait (the definitions do when they are built, so in every run process)."""
    # Replacing Dagster's method is the point of this module.
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = _interval_to_next_pending_claim_check  # type: ignore[method-assign]
