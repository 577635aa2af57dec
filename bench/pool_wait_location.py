"""A one-asset code location for bench_pool_wait.py: a step in pool `bench_pool`, with Dagster's own
wait for the pool's slot, or the idle one the project installs when BENCH_POOL_WAIT=idle."""

import os

import dagster as dg

if os.environ.get("BENCH_POOL_WAIT") == "idle":
    from kinetics_assets.defs.pool_wait import wait_idle_for_pool_slots

    wait_idle_for_pool_slots()


@dg.asset(pool="bench_pool")
def waits() -> None:
    """Runs once it holds the pool's slot; the bench measures the wait before that."""


defs = dg.Definitions(assets=[waits], executor=dg.in_process_executor)
