"""A perceptual hash of each second of every ok video (`media.fingerprint`), for finding copies and
overlapping segments without any model: a column stage settled in `prepare` (a CPU task), like
`frame_stats`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.fingerprint import FingerprintConfig, as_stored, fingerprint_frames
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.media.transcode import release_av_cycles
from kinetics_assets.stages.contract import ColumnStage, Resources, VideoTask, as_settings
from kinetics_assets.stages.rows import StageRow, bind, column
from kinetics_assets.steps.checks import EVERY_OK_VIDEO_HAS_FINGERPRINT, FINGERPRINT_CONSISTENT, Verdict, Verdicts
from kinetics_assets.table import shard_ok_rows

if TYPE_CHECKING:
    import lance

    from kinetics_assets.stages.contract import SettingValue

__all__ = ["FINGERPRINT_SCHEMA", "FingerprintRow", "FingerprintStage"]

HASH_KIND = "phash-dct64-mean"
"""The hash's definition, recorded with the settings: a changed definition redoes every row."""

FINGERPRINT_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("fingerprint_status", pa.string()),  # ok, failed
        pa.field("fingerprint_error", pa.string()),
        # One 64-bit pHash per 1/fps seconds as int64 (`media.fingerprint.as_stored`); 0: a flat second.
        pa.field("fingerprint", pa.list_(pa.int64())),
        pa.field("fingerprint_fps", pa.float32()),
        pa.field("fingerprint_processed_at", pa.timestamp("us", tz="UTC")),
        pa.field("fingerprint_settings", pa.string()),
    ]
)


@dataclass(frozen=True, kw_only=True)
class FingerprintRow(StageRow):
    prefix: ClassVar[str] = "fingerprint"
    schema: ClassVar = FINGERPRINT_SCHEMA
    video_id: str
    status: str
    error: str | None = None
    hashes: list[int] | None = column(name="fingerprint")
    fps: float | None = column()


bind(FingerprintRow, model=False)


@dataclass(frozen=True, kw_only=True)
class FingerprintStage(ColumnStage[FingerprintRow, None, None, None]):
    name: ClassVar[str] = "fingerprint"
    asset: ClassVar[str] = "clip_fingerprints"
    row_type: ClassVar = FingerprintRow
    statuses: ClassVar = ("ok", "failed")
    uses_model: ClassVar[bool] = False

    config: FingerprintConfig = FingerprintConfig()
    resources: Resources = Resources()

    def settings(self) -> dict[str, SettingValue]:
        return as_settings(hash=HASH_KIND, **dataclasses.asdict(self.config))

    def prepare(self, task: VideoTask) -> FingerprintRow:
        data = task.snapshot.video(task.row_id).read()
        indices = FrameSampling(policy="fps", fps=self.config.sample_fps).indices(frame_timestamps(data))
        frames, times = decode_frames(data, indices, threads=self.resources.cpus)
        release_av_cycles()
        hashes = as_stored(fingerprint_frames(frames, times, self.config))
        return FingerprintRow(video_id=task.video_id, status="ok", hashes=hashes, fps=self.config.fps)

    def failed_row(self, task: VideoTask, error: str) -> FingerprintRow:
        return FingerprintRow(video_id=task.video_id, status="failed", error=error)

    def check(self, ds: lance.LanceDataset, shard: str) -> Verdicts:
        columns = ["video_id", "duration_s", *(f.name for f in FINGERPRINT_SCHEMA if f.name != "video_id")]
        rows = shard_ok_rows(ds, shard, columns)
        without = [r["video_id"] for r in rows if r["fingerprint_status"] != "ok"]
        problems = [r["video_id"] for r in rows if r["fingerprint_status"] == "ok" and not _consistent(r)]
        flat = [r["video_id"] for r in rows if r["fingerprint_status"] == "ok" and not any(r["fingerprint"] or [])]
        return {
            EVERY_OK_VIDEO_HAS_FINGERPRINT.name: Verdict(
                not without, {"ok_videos": len(rows), "without": without[:20]}
            ),
            FINGERPRINT_CONSISTENT.name: Verdict(
                not problems, {"problems": problems[:20], "all_flat": flat[:20], "all_flat_count": len(flat)}
            ),
        }


def _consistent(row: dict[str, Any]) -> bool:
    """One hash per window of the clip (the last may be a part one; a clip under a window has one)."""
    hashes, fps = row["fingerprint"] or [], row["fingerprint_fps"] or 0.0
    duration = row["duration_s"] or 0.0
    return len(hashes) > 0 and fps > 0 and abs(len(hashes) - duration * fps) <= 1.0 + 1e-6
