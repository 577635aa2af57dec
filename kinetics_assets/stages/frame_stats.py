"""Per-second brightness and motion of every ok video (`media.frame_stats`), for finding black and
frozen clips: a column stage with no model, settled in `prepare` (a CPU task), on the same shard loop
and executors as the model stages.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.frame_stats import WHITE, FrameStatsConfig, measure_frames
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.media.transcode import release_av_cycles
from kinetics_assets.stages.contract import ColumnStage, Resources, VideoTask, as_settings
from kinetics_assets.stages.rows import StageRow, bind, column
from kinetics_assets.steps.checks import EVERY_OK_VIDEO_HAS_FRAME_STATS, FRAME_STATS_CONSISTENT, Verdict, Verdicts
from kinetics_assets.table import shard_ok_rows

if TYPE_CHECKING:
    import lance

    from kinetics_assets.stages.contract import SettingValue

__all__ = ["FRAME_STATS_SCHEMA", "FrameStatsRow", "FrameStatsStage"]

FRAME_STATS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_stats_status", pa.string()),  # ok, failed
        pa.field("frame_stats_error", pa.string()),
        pa.field("frame_stats_luma", pa.list_(pa.float32())),  # mean luma of each second, 0-255
        pa.field("frame_stats_motion", pa.list_(pa.float32())),  # mean luma change of each second; null: none
        pa.field("frame_stats_black_s", pa.float32()),
        pa.field("frame_stats_frozen_s", pa.float32()),
        pa.field("frame_stats_processed_at", pa.timestamp("us", tz="UTC")),
        pa.field("frame_stats_settings", pa.string()),
    ]
)


@dataclass(frozen=True, kw_only=True)
class FrameStatsRow(StageRow):
    prefix: ClassVar[str] = "frame_stats"
    schema: ClassVar = FRAME_STATS_SCHEMA
    video_id: str
    status: str
    error: str | None = None
    luma: list[float] | None = column()
    motion: list[float | None] | None = column()
    black_s: float | None = column()
    frozen_s: float | None = column()


bind(FrameStatsRow, model=False)


@dataclass(frozen=True, kw_only=True)
class FrameStatsStage(ColumnStage[FrameStatsRow, None, None, None]):
    name: ClassVar[str] = "frame_stats"
    asset: ClassVar[str] = "frame_stats"
    row_type: ClassVar = FrameStatsRow
    statuses: ClassVar = ("ok", "failed")
    uses_model: ClassVar[bool] = False

    config: FrameStatsConfig = FrameStatsConfig()
    resources: Resources = Resources()

    def settings(self) -> dict[str, SettingValue]:
        return as_settings(**dataclasses.asdict(self.config))

    def prepare(self, task: VideoTask) -> FrameStatsRow:
        data = task.snapshot.video(task.row_id).read()
        indices = FrameSampling(policy="fps", fps=self.config.fps).indices(frame_timestamps(data))
        frames, times = decode_frames(data, indices, threads=self.resources.cpus)
        release_av_cycles()
        stats = measure_frames(frames, times, self.config)
        return FrameStatsRow(video_id=task.video_id, status="ok", **dataclasses.asdict(stats))

    def failed_row(self, task: VideoTask, error: str) -> FrameStatsRow:
        return FrameStatsRow(video_id=task.video_id, status="failed", error=error)

    def check(self, ds: lance.LanceDataset, shard: str) -> Verdicts:
        columns = ["video_id", "duration_s", *(f.name for f in FRAME_STATS_SCHEMA if f.name != "video_id")]
        rows = shard_ok_rows(ds, shard, columns)
        without = [r["video_id"] for r in rows if r["frame_stats_status"] != "ok"]
        problems = [r["video_id"] for r in rows if r["frame_stats_status"] == "ok" and not _consistent(r)]
        return {
            EVERY_OK_VIDEO_HAS_FRAME_STATS.name: Verdict(
                not without, {"ok_videos": len(rows), "without": without[:20]}
            ),
            FRAME_STATS_CONSISTENT.name: Verdict(not problems, {"problems": problems[:20]}),
        }


def _consistent(row: dict[str, Any]) -> bool:
    """Values in range, and one value a second of the clip (the last second may be a part one)."""
    luma, motion = row["frame_stats_luma"] or [], row["frame_stats_motion"] or []
    duration = row["duration_s"] or 0.0
    spans = row["frame_stats_black_s"], row["frame_stats_frozen_s"]
    return (
        len(luma) == len(motion) > 0
        and abs(len(luma) - duration) <= 1.0 + 1e-6
        and all(0.0 <= v <= WHITE for v in luma)
        and all(v is None or v >= 0.0 for v in motion)
        and all(s is not None and 0.0 <= s <= duration + 1.0 for s in spans)
    )
