"""Limits against hostile or broken input, in one place.

Archives come from the internet and clips from YouTube: a tiny gzip can inflate to terabytes, a tar
header can claim any size, and a 50 KB video can declare (or suddenly switch to) 16384x16384 frames
or a ten-hour timeline. Every limit below turns such input into a clear, recorded failure instead of
a full disk, an out-of-memory kill or a step that never ends. Defaults are generous enough that no
real Kinetics shard comes near them; `None` switches a limit off.

Where each limit is enforced, and what its failure looks like:

- max_archive_bytes: download.DownloadConfig.max_bytes checks the announced Content-Length, the body
  as it grows (no or a lying length), a local source and an already verified copy. DownloadError
  naming shard, url and limit; nothing is kept.
- max_member_bytes: archive.iter_video_members, from the tar header, before the member is read. A
  failed row `limit_exceeded` naming member and limit; the rest of the shard goes on.
- max_shard_read_bytes: archive.iter_video_members and verify_archive count the uncompressed bytes
  of every member. ArchiveLimitExceeded naming shard and limit; the step fails before its commit, so
  the table is unchanged (a cut-off shard would look complete).
- max_pixels_per_frame, max_duration_s, max_frames (FrameLimits): transcode.TranscodeConfig, which
  extends FrameLimits, from the headers and again on every decoded frame (headers lie; FFmpeg's
  `max_pixels` stops the allocation of a frame that is too large). A failed row `limit_exceeded`
  naming the limit.

No imports from the project: every other module can use these defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_LIMITS",
    "GIB",
    "FrameLimits",
    "Limits",
]

GIB = 1 << 30


@dataclass(frozen=True, kw_only=True)
class FrameLimits:
    """The per-clip limits, checked on the headers and on every decoded frame. The transcode
    engine's config extends this class, so it carries exactly these fields.
    """

    max_pixels_per_frame: int | None = 8192 * 8192
    max_duration_s: float | None = 3600.0
    max_frames: int | None = 3600 * 120

    def __post_init__(self) -> None:
        for limit in dataclasses.fields(FrameLimits):
            _positive_or_none(self, limit.name)


@dataclass(frozen=True, kw_only=True)
class Limits(FrameLimits):
    """All input limits of a run; the Dagster run configs expose each field."""

    max_archive_bytes: int | None = 64 * GIB
    """Compressed size of one shard archive (or of one video of a video-list shard) on download."""
    max_member_bytes: int | None = 4 * GIB
    """Uncompressed size of one archive member (a clip is ~1-100 MB)."""
    max_shard_read_bytes: int | None = 256 * GIB
    """Uncompressed bytes of every member of one archive together (the gzip-bomb guard): a K400
    validation part holds ~1.5 GB."""

    def __post_init__(self) -> None:
        for limit in dataclasses.fields(self):
            _positive_or_none(self, limit.name)

    def frame_limits(self) -> dict[str, Any]:
        """The limits TranscodeConfig takes, as keyword arguments."""
        return {limit.name: getattr(self, limit.name) for limit in dataclasses.fields(FrameLimits)}


def _positive_or_none(limits: FrameLimits, name: str) -> None:
    value = getattr(limits, name)
    if value is not None and not value > 0:
        raise ValueError(f"{type(limits).__name__}.{name} must be > 0 or None (no limit), got {value!r}")


DEFAULT_LIMITS = Limits()
