"""Per-video column stages: the contract (`contract`, `rows`), the one shard loop (`shard_loop`), the
in-process executor (`executor`; the Ray one is `distributed.stage_executor`) and the stages
themselves (depth, transcripts, frame statistics). No Dagster, no Ray.
"""

from kinetics_assets.stages.contract import ColumnStage, ModelInfo, Prepared, Resources, TableSnapshot, VideoTask
from kinetics_assets.stages.depth import DepthRow, DepthStage
from kinetics_assets.stages.executor import InProcessExecutor, StageExecutor, StageRun
from kinetics_assets.stages.rows import StageRow, column
from kinetics_assets.stages.shard_loop import StageShardResult, VideoFailure, run_column_stage, run_column_stage_shard
from kinetics_assets.stages.transcripts import TranscriptRow, TranscriptStage

__all__ = [
    "ColumnStage",
    "DepthRow",
    "DepthStage",
    "InProcessExecutor",
    "ModelInfo",
    "Prepared",
    "Resources",
    "StageExecutor",
    "StageRow",
    "StageRun",
    "StageShardResult",
    "TableSnapshot",
    "TranscriptRow",
    "TranscriptStage",
    "VideoFailure",
    "VideoTask",
    "column",
    "run_column_stage",
    "run_column_stage_shard",
]
