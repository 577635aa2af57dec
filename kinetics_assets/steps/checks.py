"""Every shard asset's checks, declared once, and the verdict a step gives each of them.

The steps judge their shards (they have the table and the archive at hand); the Dagster layer only
turns these declarations into check specs and the verdicts into check evaluations, so a check's
name, meaning and whether it blocks are written here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEPTH_CHECKS",
    "EMBEDDING_CHECKS",
    "FINGERPRINT_CHECKS",
    "FRAME_STATS_CHECKS",
    "RAW_CHECKS",
    "TRANSCODE_CHECKS",
    "TRANSCRIPT_CHECKS",
    "CheckSpec",
    "Severity",
    "Verdict",
    "Verdicts",
]

Severity = Literal["error", "warn"]


@dataclass(frozen=True, kw_only=True)
class CheckSpec:
    """One check of a shard asset: a blocking one that fails stops the shard's downstream work."""

    name: str
    description: str = ""
    blocking: bool = False
    severity: Severity = "error"


@dataclass(frozen=True)
class Verdict:
    """A check's outcome for one shard, with the details that explain it (recorded as metadata)."""

    passed: bool
    details: dict[str, Any] = field(default_factory=dict)


Verdicts = dict[str, Verdict]
"""A shard's verdicts by check name (`CheckSpec.name`)."""

# raw_archives
ARCHIVE_VERIFIED = CheckSpec(name="archive_verified", description="gzip stream and tar index read end to end")
HAS_VIDEO_MEMBERS = CheckSpec(name="has_video_members", description="at least one video member")
MEMBER_NAMES_PARSE = CheckSpec(
    name="member_names_parse", severity="warn", description="every video member is named <youtube_id>_<start>_<end>"
)
RAW_CHECKS = (ARCHIVE_VERIFIED, HAS_VIDEO_MEMBERS, MEMBER_NAMES_PARSE)

# transcoded_videos
ONE_ROW_PER_MEMBER = CheckSpec(name="one_row_per_member", description="one row per video member of the source")
VIDEO_ID_UNIQUE = CheckSpec(name="video_id_unique")
FAILURE_RATE = CheckSpec(name="failure_rate", description="failed clips under max_failure_rate", blocking=True)
OK_ROWS_DECODE = CheckSpec(name="ok_rows_decode", description="every ok video opens and has the promised size")
BLOB_SIZES_POSITIVE = CheckSpec(name="blob_sizes_positive")
TRANSCODE_CHECKS = (ONE_ROW_PER_MEMBER, VIDEO_ID_UNIQUE, FAILURE_RATE, OK_ROWS_DECODE, BLOB_SIZES_POSITIVE)

# depth_maps
EVERY_OK_VIDEO_HAS_DEPTH = CheckSpec(name="every_ok_video_has_depth")
DEPTH_FRAME_COUNT = CheckSpec(name="depth_frame_count", description="decoded depth frames = stored = sampled")
DEPTH_VALUES_IN_RANGE = CheckSpec(name="depth_values_in_range", description="finite and within the stored lo/hi")
DEPTH_SIZE_MATCHES_VIDEO = CheckSpec(name="depth_size_matches_video")
DEPTH_CHECKS = (EVERY_OK_VIDEO_HAS_DEPTH, DEPTH_FRAME_COUNT, DEPTH_VALUES_IN_RANGE, DEPTH_SIZE_MATCHES_VIDEO)

# transcripts
EVERY_OK_VIDEO_HAS_TRANSCRIPT_STATUS = CheckSpec(name="every_ok_video_has_transcript_status")
TRANSCRIPT_SEGMENTS_WITHIN_CLIP = CheckSpec(
    name="transcript_segments_within_clip_and_ordered", description="segment times within the clip, in order"
)
TRANSCRIPT_TEXT_EMPTY_WHEN_NOT_OK = CheckSpec(
    name="transcript_text_empty_exactly_when_not_ok", description="text only where the status is ok"
)
TRANSCRIPT_CHECKS = (
    EVERY_OK_VIDEO_HAS_TRANSCRIPT_STATUS,
    TRANSCRIPT_SEGMENTS_WITHIN_CLIP,
    TRANSCRIPT_TEXT_EMPTY_WHEN_NOT_OK,
)

# frame_stats
EVERY_OK_VIDEO_HAS_FRAME_STATS = CheckSpec(name="every_ok_video_has_frame_stats")
FRAME_STATS_CONSISTENT = CheckSpec(
    name="frame_stats_consistent", description="one value a second of the clip, luma in 0-255, spans within the clip"
)
FRAME_STATS_CHECKS = (EVERY_OK_VIDEO_HAS_FRAME_STATS, FRAME_STATS_CONSISTENT)

# clip_embeddings
EVERY_OK_VIDEO_HAS_EMBEDDING = CheckSpec(name="every_ok_video_has_embedding")
EMBEDDINGS_UNIT_NORM = CheckSpec(
    name="embeddings_unit_norm", description="the column's width, finite, unit L2 norm within float16 rounding"
)
EMBEDDING_FRAMES_WITHIN_CLIP = CheckSpec(
    name="embedding_frames_within_clip", description="the sampled frames' count, their times ascending within the clip"
)
EMBEDDING_CHECKS = (EVERY_OK_VIDEO_HAS_EMBEDDING, EMBEDDINGS_UNIT_NORM, EMBEDDING_FRAMES_WITHIN_CLIP)
# clip_fingerprints
EVERY_OK_VIDEO_HAS_FINGERPRINT = CheckSpec(name="every_ok_video_has_fingerprint")
FINGERPRINT_CONSISTENT = CheckSpec(
    name="fingerprint_consistent", description="one hash a second of the clip, not every second flat"
)
FINGERPRINT_CHECKS = (EVERY_OK_VIDEO_HAS_FINGERPRINT, FINGERPRINT_CONSISTENT)
