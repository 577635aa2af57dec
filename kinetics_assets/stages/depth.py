"""Depth Anything V2 over the sampled frames of every ok video, stored as the depth columns.

prepare decodes the sampled frames (a CPU task), infer runs the model over the frames of one or
more videos of one size (a model worker), finish encodes the depth as a small video (a CPU task).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.depth_codec import DepthEncoding, encode_depth
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.media.transcode import release_av_cycles
from kinetics_assets.stages.contract import ModelStage, Prepared, Resources, VideoTask, as_settings
from kinetics_assets.stages.depth_checks import check_shard_depth
from kinetics_assets.stages.rows import StageRow, bind, column
from kinetics_assets.table import DEPTH_SCHEMA

if TYPE_CHECKING:
    from collections.abc import Sequence

    import lance

    from kinetics_assets.depth.model import DepthEstimator, DepthModelConfig
    from kinetics_assets.stages.contract import SettingValue
    from kinetics_assets.steps.checks import Verdicts

__all__ = ["DepthRow", "DepthStage", "FramesMeta"]


@dataclass(frozen=True, kw_only=True)
class DepthRow(StageRow):
    """A video's depth columns; every field but the status is None when the status is failed."""

    prefix: ClassVar[str] = "depth"
    schema: ClassVar = DEPTH_SCHEMA
    video_id: str
    status: str
    error: str | None = None
    data: bytes | None = column(name="depth")
    lo: float | None = column()
    hi: float | None = column()
    frames: int | None = column()
    width: int | None = column()
    height: int | None = column()
    timestamps: list[float] | None = column()
    sampling: str | None = column()
    encoding: str | None = column()


bind(DepthRow, model=True)


@dataclass(frozen=True, kw_only=True)
class FramesMeta:
    """What is known of a video's sampled frames besides the pixels (small: travels between tasks)."""

    frames: int
    size: tuple[int, int]
    """(height, width): one model call stacks frames of one size."""
    timestamps: np.ndarray


@dataclass(frozen=True, kw_only=True)
class DepthStage(ModelStage[DepthRow, FramesMeta, np.ndarray, np.ndarray]):
    name: ClassVar[str] = "depth"
    asset: ClassVar[str] = "depth_maps"
    row_type: ClassVar = DepthRow
    statuses: ClassVar = ("ok", "failed")
    heavy_finish: ClassVar[bool] = True
    default_in_flight: ClassVar[int] = 4

    model: DepthModelConfig
    sampling: FrameSampling = FrameSampling()
    encoding: DepthEncoding = DepthEncoding()
    resources: Resources = Resources()
    pretrained: bool = True

    def settings(self) -> dict[str, SettingValue]:
        return self.model_settings() | as_settings(
            input_short_side=self.model.input_short_side,
            sampling=self.sampling.describe(),
            codec=self.encoding.codec,
            crf=self.encoding.crf,
            keyframe_interval_s=self.encoding.keyframe_interval_s,
            preset=self.encoding.preset,
        )

    def load_model(self) -> DepthEstimator:
        from kinetics_assets.depth.model import DepthEstimator  # torch: on the model worker only

        return DepthEstimator(self.model)

    def frames_of(self, row: DepthRow) -> int:
        return row.frames or 0

    def prepare(self, task: VideoTask) -> Prepared[FramesMeta, np.ndarray]:
        data = task.snapshot.video(task.row_id).read()
        frames, times = decode_frames(data, self.sampling.indices(frame_timestamps(data)), threads=self.resources.cpus)
        release_av_cycles()
        if len(frames) == 0:
            raise ValueError("no frames to run depth on")
        meta = FramesMeta(frames=len(frames), size=(frames.shape[1], frames.shape[2]), timestamps=times)
        return Prepared(task=task, meta=meta, payload=frames, batch_key=meta.size, weight=meta.frames)

    def infer(self, payloads: Sequence[np.ndarray]) -> list[np.ndarray]:
        depth = self.loaded.predict(np.concatenate(payloads) if len(payloads) > 1 else payloads[0])
        return np.split(depth, np.cumsum([len(p) for p in payloads])[:-1])

    def finish(self, prepared: Prepared[FramesMeta, None], output: np.ndarray) -> DepthRow:
        encoded = encode_depth(
            output, prepared.meta.timestamps, dataclasses.replace(self.encoding, threads=self.resources.cpus)
        )
        release_av_cycles()
        return DepthRow(
            video_id=prepared.task.video_id,
            status="ok",
            data=encoded.data,
            lo=encoded.lo,
            hi=encoded.hi,
            frames=encoded.frames,
            width=encoded.width,
            height=encoded.height,
            timestamps=[float(t) for t in encoded.timestamps],
            sampling=self.sampling.describe(),
            encoding=encoded.encoding,
        )

    def failed_row(self, task: VideoTask, error: str) -> DepthRow:
        return DepthRow(video_id=task.video_id, status="failed", error=error, sampling=self.sampling.describe())

    def check(self, ds: lance.LanceDataset, shard: str) -> Verdicts:
        return check_shard_depth(ds, shard, self.sampling)
