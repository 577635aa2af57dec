"""One video in, one depth row out: the per-video work of the depth step, whoever runs it.

Decoding, encoding and the shape of the row live here once; the Ray layer runs them in its tasks
and model actors, the in-process executor in the calling process. A video whose depth fails still
yields a row (`depth_status` failed, with its cause), so a bad video never stops its shard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.depth_codec import DepthEncoding, encode_depth
from kinetics_assets.media.transcode import release_av_cycles

if TYPE_CHECKING:
    import lance
    import numpy as np

    from kinetics_assets.depth.model import DepthEstimator
    from kinetics_assets.media.sampling import FrameSampling

DepthStatus = Literal["ok", "failed"]


@dataclass(frozen=True, kw_only=True)
class DepthJob:
    """One ok video of the table, found by its row id at the version the step read."""

    video_id: str
    row_id: int
    shard: str = ""


@dataclass(frozen=True, kw_only=True)
class DecodedVideo:
    """What is known of a video's sampled frames besides the pixels (small: travels between tasks)."""

    frames: int
    size: tuple[int, int]
    """(height, width): one model call batches only frames of one size."""
    timestamps: np.ndarray


def decode_video(
    ds: lance.LanceDataset, job: DepthJob, sampling: FrameSampling, *, threads: int = 1
) -> tuple[DecodedVideo, np.ndarray]:
    """The video's sampled RGB frames, read out of its blob; `threads`: the CPUs the caller reserved."""
    blob = ds.take_blobs("video", ids=[job.row_id])[0]
    if blob is None:  # a null blob: the row has no video to run depth on
        raise ValueError(f"{job.video_id}: the row has no video bytes")
    data = blob.read()
    frames, times = decode_frames(data, sampling.indices(frame_timestamps(data)), threads=threads)
    release_av_cycles()
    return DecodedVideo(frames=len(frames), size=tuple(frames.shape[1:3]), timestamps=times), frames


def require_frames(video: DecodedVideo) -> None:
    """A video that decoded to no frames at all fails: there is nothing to run the model on."""
    if video.frames == 0:
        raise ValueError("no frames to run depth on")


def depth_columns(depth: np.ndarray, timestamps: np.ndarray, encoding: DepthEncoding) -> dict:
    """A video's depth, encoded, as the table's depth columns."""
    encoded = encode_depth(depth, timestamps, encoding)
    release_av_cycles()
    return {
        "depth": encoded.data,
        "depth_lo": encoded.lo,
        "depth_hi": encoded.hi,
        "depth_frames": encoded.frames,
        "depth_width": encoded.width,
        "depth_height": encoded.height,
        "depth_timestamps": [float(t) for t in encoded.timestamps],
        "depth_encoding": encoded.encoding,
    }


def describe_model(estimator: DepthEstimator) -> dict:
    """The loaded model as the step reports it: id, revision, device, dtype."""
    return {
        "model_id": estimator.model_id,
        "revision": estimator.revision,
        "device": str(estimator.device),
        "dtype": str(estimator.dtype),
    }


def provenance(sampling: FrameSampling, model: dict) -> dict:
    """The columns every depth row of a run shares: what made the depth."""
    return {
        "depth_sampling": sampling.describe(),
        "depth_model": model["model_id"],
        "depth_model_revision": model["revision"],
    }


def depth_row(job: DepthJob, made_by: dict, *, columns: dict | None = None, error: BaseException | None = None) -> dict:
    """The depth row of one video: its encoded `columns`, or the `error` that stopped it."""
    row = {"video_id": job.video_id, **made_by, "depth_processed_at": datetime.now(UTC)}
    if error is None:
        if columns is None:
            raise ValueError(f"{job.video_id}: a depth row needs its columns or the error that stopped it")
        row.update(columns, depth_status="ok")
    else:
        row.update(depth_status="failed", depth_error=f"{job.video_id}: {type(error).__name__}: {error}"[:2000])
    return row
