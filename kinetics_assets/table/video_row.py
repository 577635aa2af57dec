"""A row of the video table, typed beside its schema: what the transcode step makes for every clip,
ok or failed. Its fields are the schema's columns, checked at import; its values are checked
against their columns when it is made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime  # noqa: TC003 - a field's type, read by dataclasses.fields at import
from typing import TYPE_CHECKING, Literal

from kinetics_assets.table.schema import BLOB_COLUMNS, VIDEO_SCHEMA
from kinetics_assets.table.typed_rows import check_values

if TYPE_CHECKING:
    import builtins

__all__ = ["VideoRow", "VideoStatus"]

VideoStatus = Literal["ok", "failed"]


@dataclass(frozen=True, kw_only=True)
class VideoRow:
    """One clip: its identity and source, the transcoded video (ok), or the error that stopped it."""

    video_id: str
    shard: str
    status: VideoStatus
    release: str | None = None
    split: str | None = None
    label: str | None = None
    youtube_id: str | None = None
    time_start: int | None = None
    time_end: int | None = None
    source_url: str | None = None
    source_member: str | None = None
    source_codec: str | None = None
    source_pix_fmt: str | None = None
    source_width: int | None = None
    source_height: int | None = None
    source_sar: str | None = None
    source_rotation: int | None = None
    source_fps: float | None = None
    source_duration_s: float | None = None
    source_frames: int | None = None
    source_bytes: int | None = None
    source_has_audio: bool | None = None
    source_size_changes: int | None = None
    source_sizes: list[dict[str, int]] | None = None
    """Every frame size of the source: width, height and its frame count."""
    source_bitrate: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    frames: int | None = None
    bytes: int | None = None
    bitrate: int | None = None
    video_maxrate: int | None = None
    video: builtins.bytes | None = dataclasses.field(default=None, repr=False)
    error_type: str | None = None
    error_message: str | None = None
    attempts: int | None = None
    cpu_seconds: float | None = None
    encoder: str | None = None
    pipeline_version: str | None = None
    processed_at: datetime | None = None
    source_sha256: str | None = None

    def __post_init__(self) -> None:
        check_values(self, _CHECKED, VIDEO_SCHEMA)
        if self.video is not None and not isinstance(self.video, bytes):
            raise TypeError(f"VideoRow of {self.video_id}: video must be bytes, got {type(self.video).__name__}")


_FIELDS = [f.name for f in dataclasses.fields(VideoRow)]
if sorted(_FIELDS) != sorted(VIDEO_SCHEMA.names):
    raise TypeError(f"VideoRow's fields {sorted(_FIELDS)} are not the video schema's {sorted(VIDEO_SCHEMA.names)}")
# The video bytes are checked by type alone: converting megabytes to check them would copy them.
_CHECKED = [(name, name) for name in _FIELDS if name not in BLOB_COLUMNS]
