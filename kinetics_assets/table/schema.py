"""The table's columns: the video schema, the depth and transcript column groups, rows to Arrow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import lance
import pyarrow as pa

if TYPE_CHECKING:
    from collections.abc import Sequence

PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}
SIZE_TYPE = pa.struct([("width", pa.int32()), ("height", pa.int32()), ("frames", pa.int64())])

VIDEO_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False, metadata=PRIMARY_KEY),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("release", pa.string()),
        pa.field("split", pa.string()),
        pa.field("label", pa.string()),
        pa.field("youtube_id", pa.string()),
        pa.field("time_start", pa.int32()),
        pa.field("time_end", pa.int32()),
        pa.field("source_url", pa.string()),
        pa.field("source_member", pa.string()),
        pa.field("source_codec", pa.string()),
        pa.field("source_pix_fmt", pa.string()),
        pa.field("source_width", pa.int32()),
        pa.field("source_height", pa.int32()),
        pa.field("source_sar", pa.string()),
        pa.field("source_rotation", pa.int32()),
        pa.field("source_fps", pa.float64()),
        pa.field("source_duration_s", pa.float64()),
        pa.field("source_frames", pa.int64()),
        pa.field("source_bytes", pa.int64()),
        pa.field("source_has_audio", pa.bool_()),
        # How often consecutive frames changed size, and every size with its frame count.
        pa.field("source_size_changes", pa.int32()),
        pa.field("source_sizes", pa.list_(SIZE_TYPE)),
        pa.field("source_bitrate", pa.int64()),  # whole file, bits/s over the decoded duration
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("fps", pa.float64()),
        pa.field("duration_s", pa.float64()),
        pa.field("frames", pa.int64()),
        pa.field("bytes", pa.int64()),
        pa.field("bitrate", pa.int64()),  # whole mp4, bits/s
        pa.field("video_maxrate", pa.int64()),  # the rate cap the video was encoded under; null: none
        lance.blob_field("video"),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("cpu_seconds", pa.float64()),
        pa.field("encoder", pa.string()),
        pa.field("pipeline_version", pa.string()),
        pa.field("processed_at", pa.timestamp("us", tz="UTC")),
        # sha256 of what the clip was read from (its shard's archive, or the video file itself), so
        # a re-run can tell a shard committed from the same input with the same settings.
        pa.field("source_sha256", pa.string()),
    ]
)
BLOB_COLUMNS = ("video",)
SCALAR_COLUMNS = [f.name for f in VIDEO_SCHEMA if f.name not in BLOB_COLUMNS]


def rows_to_table(rows: Sequence[Any]) -> pa.Table:
    """Rows to a table of the video schema: `VideoRow`s (what the pipeline makes) or mappings keyed
    by column (tools and tests), whose absent keys become null.
    """
    columns = {}
    for field in VIDEO_SCHEMA:
        name = field.name
        values = [row.get(name) if isinstance(row, Mapping) else getattr(row, name) for row in rows]
        if name == "video":
            columns[name] = lance.blob_array(values)
        else:
            columns[name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=VIDEO_SCHEMA)


# Depth lives in the same table as a group of columns added once. They are plain (non-blob) columns
# so that a shard's depth can be written with `merge_insert(...).write_mode("rewrite_columns")`,
# which adds one data file per fragment holding only these columns: the video bytes are not rewritten.
DEPTH_FIELDS = [
    pa.field("depth", pa.large_binary()),
    pa.field("depth_status", pa.string()),
    pa.field("depth_error", pa.string()),
    pa.field("depth_lo", pa.float32()),
    pa.field("depth_hi", pa.float32()),
    pa.field("depth_frames", pa.int32()),
    pa.field("depth_width", pa.int32()),
    pa.field("depth_height", pa.int32()),
    pa.field("depth_timestamps", pa.list_(pa.float64())),
    pa.field("depth_sampling", pa.string()),
    pa.field("depth_encoding", pa.string()),
    pa.field("depth_model", pa.string()),
    pa.field("depth_model_revision", pa.string()),
    pa.field("depth_pretrained", pa.bool_()),
    pa.field("depth_processed_at", pa.timestamp("us", tz="UTC")),
    pa.field("depth_settings", pa.string()),  # JSON of every setting that decides the depth made
]
DEPTH_SCHEMA = pa.schema([pa.field("video_id", pa.string(), nullable=False), *DEPTH_FIELDS])


# Transcripts: a second group of derived columns, added and written exactly like depth.
SEGMENT_TYPE = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])
TRANSCRIPT_FIELDS = [
    pa.field("transcript_status", pa.string()),  # ok, no_audio, no_speech, failed
    pa.field("transcript_error", pa.string()),
    pa.field("transcript_text", pa.string()),  # "" unless the status is ok
    pa.field("transcript_language", pa.string()),
    pa.field("transcript_language_probability", pa.float32()),  # null when the language was fixed
    pa.field("transcript_segments", pa.list_(SEGMENT_TYPE)),  # seconds in the clip, ordered
    pa.field("transcript_model", pa.string()),
    pa.field("transcript_model_revision", pa.string()),
    pa.field("transcript_pretrained", pa.bool_()),
    pa.field("transcript_processed_at", pa.timestamp("us", tz="UTC")),
    pa.field("transcript_settings", pa.string()),  # JSON of every setting that decides the transcript
]
TRANSCRIPT_SCHEMA = pa.schema([pa.field("video_id", pa.string(), nullable=False), *TRANSCRIPT_FIELDS])
