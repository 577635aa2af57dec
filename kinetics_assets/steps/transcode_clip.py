"""One clip in, one table row out: the unit of work a Ray task runs.

A clip that cannot be transcoded still yields a row (status `failed`, with the error's kind and
message), so a bad clip is recorded and never stops its shard.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kinetics_assets.ingest.annotations import Annotation, parse_member_name, video_id_for
from kinetics_assets.media.transcode import TranscodeConfig, TranscodeError, transcode
from kinetics_assets.table.video_row import VideoRow, VideoStatus

PIPELINE_VERSION = "1"

ClipStatus = VideoStatus


@dataclass(frozen=True)
class ClipJob:
    """What a worker needs to know about a clip besides its bytes."""

    video_id: str
    shard: str
    release: str
    member: str
    source_url: str
    label: str | None
    split: str | None
    youtube_id: str | None
    time_start: int | None
    time_end: int | None
    attempts: int = 1
    source_sha256: str | None = None


def make_job(
    member: str,
    *,
    shard: str,
    release: str,
    source_url: str,
    annotations: dict[str, Annotation],
    attempts: int = 1,
    source_sha256: str | None = None,
) -> ClipJob:
    """Name, label and split of an archive member; K700-style class folders win over the CSV."""
    parsed = parse_member_name(member)
    video_id = video_id_for(member, shard)
    note = annotations.get(video_id)
    label = (parsed.folder if parsed else None) or (note.label if note else None)
    return ClipJob(
        video_id=video_id,
        shard=shard,
        release=release,
        member=member,
        source_url=source_url,
        label=label,
        split=note.split if note else None,
        youtube_id=parsed.youtube_id if parsed else None,
        time_start=parsed.time_start if parsed else None,
        time_end=parsed.time_end if parsed else None,
        attempts=attempts,
        source_sha256=source_sha256,
    )


def encoder_settings(config: TranscodeConfig) -> str:
    """The `encoder` column: the settings a clip was transcoded with, as canonical JSON."""
    return json.dumps(config.as_dict(), sort_keys=True)


def _identity(job: ClipJob, config: TranscodeConfig) -> dict[str, Any]:
    """The columns every row of a clip has, ok or failed: what it is, where from, made how and when."""
    return {
        "video_id": job.video_id,
        "shard": job.shard,
        "release": job.release,
        "split": job.split,
        "label": job.label,
        "youtube_id": job.youtube_id,
        "time_start": job.time_start,
        "time_end": job.time_end,
        "source_url": job.source_url,
        "source_member": job.member,
        "source_sha256": job.source_sha256,
        "attempts": job.attempts,
        "encoder": encoder_settings(config),
        "pipeline_version": PIPELINE_VERSION,
        "processed_at": datetime.now(UTC),
    }


def failed_row(
    job: ClipJob,
    config: TranscodeConfig,
    error_type: str,
    message: str,
    *,
    source_bytes: int | None = None,
    cpu_seconds: float | None = None,
) -> VideoRow:
    return VideoRow(
        **_identity(job, config),
        status="failed",
        error_type=error_type,
        error_message=message,
        source_bytes=source_bytes,
        cpu_seconds=cpu_seconds,
    )


def process_clip(job: ClipJob, data: bytes, config: TranscodeConfig) -> VideoRow:
    """Transcode one clip and describe it as a row of the video table."""
    started = time.process_time()
    try:
        result = transcode(data, config, name=f"{job.shard}/{job.member}")
    except TranscodeError as exc:
        return failed_row(
            job, config, exc.kind, str(exc), source_bytes=len(data), cpu_seconds=time.process_time() - started
        )
    source = result.source
    return VideoRow(
        **_identity(job, config),
        status="ok",
        source_codec=source.codec,
        source_pix_fmt=source.pix_fmt,
        source_width=source.width,
        source_height=source.height,
        source_sar=source.sar,
        source_rotation=source.rotation,
        source_fps=source.fps,
        source_duration_s=source.duration_s,
        source_frames=source.frames,
        source_bytes=len(data),
        source_has_audio=source.has_audio,
        source_size_changes=source.size_changes,
        source_sizes=[{"width": w, "height": h, "frames": n} for w, h, n in source.sizes],
        source_bitrate=source.bitrate,
        width=result.width,
        height=result.height,
        fps=result.fps,
        duration_s=result.duration_s,
        frames=result.frames,
        bytes=result.bytes,
        bitrate=result.bitrate,
        video_maxrate=result.video_maxrate,
        video=result.video,
        cpu_seconds=result.cpu_seconds,
    )


@dataclass(frozen=True, kw_only=True)
class ClipSummary:
    """The small part of a clip's row the driver keeps for metadata (no video bytes), so its memory
    does not grow with the run.
    """

    video_id: str
    status: ClipStatus
    error_type: str | None = None
    error_message: str | None = None
    source_bytes: int | None = None
    bytes: int | None = None
    cpu_seconds: float | None = None
    frames: int | None = None


def summary(row: VideoRow | Mapping[str, Any]) -> ClipSummary:
    """A clip's row summarised: one just made (`VideoRow`), or one read back from the table."""
    names = [f.name for f in dataclasses.fields(ClipSummary)]
    values = {n: row.get(n) for n in names} if isinstance(row, Mapping) else {n: getattr(row, n) for n in names}
    return ClipSummary(**values)
