"""One partition per shard of the configured release or manifest, how many go in one run, and what
every shard asset shares: those partitions, that policy and checks recorded per partition."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from kinetics_assets.ingest.shards import load_shards
from kinetics_assets.settings import Settings
from kinetics_assets.steps.checks import CheckSpec

SETTINGS = Settings.from_env()
SHARDS = load_shards(SETTINGS)
shard_partitions = dg.StaticPartitionsDefinition(list(SHARDS))

# Backfill policies are beta in Dagster 1.13; the behaviour relied on is tested in tests/integration/test_backfill_runs.py.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
BACKFILL_POLICY = (
    dg.BackfillPolicy.single_run()
    if SETTINGS.partitions_per_run is None
    else dg.BackfillPolicy.multi_run(max_partitions_per_run=SETTINGS.partitions_per_run)
)
"""A backfill puts up to `partitions_per_run` shards in one run (all of them when unset)."""


def check_specs(asset: str, checks: Sequence[CheckSpec]) -> list[dg.AssetCheckSpec]:
    """The asset's check specs, from the steps' declarations; one result per partition."""
    # Partitioned checks record one result per shard in a run of many shards (a preview API in 1.13).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(
                c.name,
                asset=asset,
                description=c.description or None,
                blocking=c.blocking,
                partitions_def=shard_partitions,
            )
            for c in checks
        ]


def shard_asset(*, checks: Sequence[CheckSpec], **asset_args: Any) -> Callable[[Callable], dg.AssetsDefinition]:
    """`dg.asset` for a shard asset, named by its function: a partition per shard, the backfill policy,
    the group, and `checks`. Its body yields the records (`recording.finish_run`), so no output is required."""

    def define(fn: Callable) -> dg.AssetsDefinition:
        return dg.asset(
            partitions_def=shard_partitions,
            backfill_policy=BACKFILL_POLICY,
            output_required=False,
            group_name="kinetics",
            check_specs=check_specs(fn.__name__, checks),
            **asset_args,
        )(fn)

    return define
