"""`frame_stats`: per-second brightness and motion of every ok video, to find black and frozen clips."""

from typing import Any

import dagster as dg

from kinetics_assets.defs.column_asset import ColumnAsset, build_column_asset
from kinetics_assets.defs.engine_config import RunConfig
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.steps.checks import FRAME_STATS_CHECKS


class FrameStatsRunConfig(RunConfig):
    """How densely each video is sampled, and what counts as black or frozen."""

    fps: float = 4.0
    """Frames sampled per second of video."""
    black_luma: float = 16.0
    """A frame whose mean luma (0-255) is under this is black."""
    frozen_motion: float = 0.5
    """A frame whose mean luma change from the previous sampled one is under this is frozen."""
    force: bool = False
    """Measure again shards whose ok videos all have statistics made after them with these settings."""
    max_in_flight: int = 8


def _stage(config: FrameStatsRunConfig, model: None, pretrained: bool) -> Any:  # noqa: ANN401, ARG001, FBT001 - the factory's signature
    from kinetics_assets.stages.frame_stats import FrameStatsStage  # Lance and the decoder: loaded by the step

    return FrameStatsStage(fps=config.fps, black_luma=config.black_luma, frozen_motion=config.frozen_motion)


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
