"""One partition per shard of the configured release or manifest, how many go in one run, and what
every shard asset shares: those partitions, that policy, checks recorded per partition and where
the per-clip work runs. Built from the settings when the definitions are built, never at import.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from kinetics_assets.ingest.shards import Shard, get_shard, load_shards

if TYPE_CHECKING:
    from kinetics_assets.settings import Execution, Settings
    from kinetics_assets.steps.checks import CheckSpec

AssetBody = Callable[..., Any]


@dataclass(frozen=True, kw_only=True)
class ShardAssets:
    """The settings of one build of the definitions and what the shard assets take from them."""

    settings: Settings
    shards: Mapping[str, Shard]
    partitions_def: dg.StaticPartitionsDefinition
    backfill_policy: dg.BackfillPolicy
    """A backfill puts up to `partitions_per_run` shards in one run (all of them when unset)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ShardAssets:
        shards = load_shards(settings)
        policy = (
            dg.BackfillPolicy.single_run()
            if settings.partitions_per_run is None
            else dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.partitions_per_run)
        )
        return cls(
            settings=settings,
            shards=shards,
            partitions_def=dg.StaticPartitionsDefinition(list(shards)),
            backfill_policy=policy,
        )

    @property
    def execution(self) -> Execution:
        return self.settings.execution

    def shard(self, key: str) -> Shard:
        return get_shard(self.shards, key)

    def check_specs(self, asset: str, checks: Sequence[CheckSpec]) -> list[dg.AssetCheckSpec]:
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
                    partitions_def=self.partitions_def,
                )
                for c in checks
            ]

    def asset(
        self,
        *,
        checks: Sequence[CheckSpec],
        description: str,
        kinds: Iterable[str],
        deps: Sequence[str] = (),
        pool: str | None = None,
        uses_ray: bool = False,
        required_resource_keys: set[str] | None = None,
    ) -> Callable[[AssetBody], dg.AssetsDefinition]:
        """`dg.asset` for a shard asset, named by its function: a partition per shard, the backfill
        policy, the group, and `checks`. Its body yields the records (`recording.finish_run`), so no
        output is required. `uses_ray`: the step hands its per-clip work to the `execution` resource,
        which is Ray unless the settings say in process (the asset's kinds say which).
        """
        on_ray = uses_ray and self.execution == "ray"

        def define(fn: AssetBody) -> dg.AssetsDefinition:
            # Backfill policies are beta in Dagster 1.13; the behaviour relied on is tested in
            # tests/integration/test_backfill_runs.py.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
                return dg.asset(
                    partitions_def=self.partitions_def,
                    backfill_policy=self.backfill_policy,
                    output_required=False,
                    group_name="kinetics",
                    check_specs=self.check_specs(fn.__name__, checks),
                    kinds={*kinds, "ray"} if on_ray else set(kinds),
                    deps=list(deps),
                    pool=pool,
                    description=description,
                    required_resource_keys=required_resource_keys,
                )(fn)

        return define
