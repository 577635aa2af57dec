"""`frame_stats`: per-second brightness and motion of every ok video, to find black and frozen clips."""

from typing import Any

import dagster as dg

from kinetics_assets.defs.column_asset import ColumnAsset, build_column_asset
from kinetics_assets.defs.engine_config import RunConfig, adding_engine_fields, engine_fields, to_engine
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.media.frame_stats import FrameStatsConfig
from kinetics_assets.steps.checks import FRAME_STATS_CHECKS


@adding_engine_fields(engine_fields(FrameStatsConfig, "fps", "black_luma", "frozen_motion"))
class FrameStatsRunConfig(RunConfig):
    """How densely each video is sampled (`fps`), and what counts as black (mean luma 0-255 under
    `black_luma`) or frozen (mean luma change under `frozen_motion`).
    """

    force: bool = False
    """Measure again shards whose ok videos all have statistics made after them with these settings."""
    max_in_flight: int | None = None
    """Videos in flight at once on Ray; None: the stage's own default."""


def _stage(config: FrameStatsRunConfig, model: None, pretrained: bool) -> Any:  # noqa: ANN401, ARG001, FBT001 - the factory's signature
    from kinetics_assets.stages.frame_stats import FrameStatsStage  # Lance and the decoder: loaded by the step

    return FrameStatsStage(config=to_engine(config, FrameStatsConfig))


def _metadata(result: Any, stage: Any, config: FrameStatsRunConfig) -> dict[str, Any]:  # noqa: ANN401, ARG001 - a StageShardResult of FrameStatsRows
    measured = [r for r in result.rows if r.status == "ok"]
    return {
        "videos": result.videos,
        "frame_stats_ok": result.ok,
        "frame_stats_failed": result.failed,
        "mostly_black": sum(1 for r in measured if r.black_s * 2 >= len(r.luma)),
        "mostly_frozen": sum(1 for r in measured if r.frozen_s * 2 >= len(r.luma)),
    }


FRAME_STATS = ColumnAsset(
    name="frame_stats",
    description="Per-second mean luma and motion of every ok video, with its black and frozen seconds.",
    checks=FRAME_STATS_CHECKS,
    kinds=frozenset({"lance"}),
    config=FrameStatsRunConfig,
    stage=_stage,
    metadata=_metadata,
)


def build_frame_stats(shard_assets: ShardAssets) -> dg.AssetsDefinition:
    return build_column_asset(shard_assets, FRAME_STATS)
