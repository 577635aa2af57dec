"""What a transcode is told and what it answers: its settings, its result and the source's
description, and its one error with a fixed vocabulary of kinds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from av.video.reformatter import Interpolation

from kinetics_assets.limits import FrameLimits

__all__ = ["ERROR_KINDS", "Preset", "SourceInfo", "TranscodeConfig", "TranscodeError", "TranscodeResult"]

ERROR_KINDS = frozenset(
    {
        "empty_file",
        "not_a_video",
        "no_video_stream",
        "decode_error",
        "truncated",
        "timeout",
        "limit_exceeded",
        "encode_error",
    }
)

_MIN_SIDE = 2  # 4:2:0 chroma needs even sides, 2 at the least
_MAX_CRF = 51  # the top of x264's CRF scale


class TranscodeError(Exception):
    """A clip could not be transcoded; `.kind` is one of ERROR_KINDS, the message names the clip."""

    def __init__(self, kind: str, message: str, *, name: str = "") -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown TranscodeError kind {kind!r}")
        self.kind = kind
        self.clip = name
        label = name or "<unnamed clip>"
        super().__init__(f"{label}: {kind}: {message}")


Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
]
"""libx264's speed presets, fastest first."""


@dataclass(frozen=True, kw_only=True)
class TranscodeConfig(FrameLimits):
    """Settings of the transcode; stored with every output so a dataset says how it was made. The
    frame limits against decompression bombs (kinetics_assets.limits; None disables one) are its
    fields too, inherited from FrameLimits.
    """

    short_side: int = 360
    preset: Preset = "veryfast"
    crf: int = 23
    # Seconds between keyframes: 1-2 s keeps random clip access cheap at little size cost.
    keyframe_interval_s: float = 1.0
    audio_bitrate: int = 96_000
    # Cap of the output's bitrate as a multiple of the source's (VBV maxrate on top of CRF); None: CRF only.
    max_bitrate_ratio: float | None = 1.0
    # Wall-clock budget per clip, checked between packets.
    timeout_s: float = 300.0
    # Codec threads; one single-threaded transcode per core is the efficient layout.
    threads: int = 1
    # Scaler kernel (av.video.reformatter.Interpolation name).
    interpolation: str = "BILINEAR"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.short_side < _MIN_SIDE:
            raise ValueError(f"TranscodeConfig.short_side must be >= {_MIN_SIDE}, got {self.short_side}")
        if not 0 <= self.crf <= _MAX_CRF:
            raise ValueError(f"TranscodeConfig.crf must be in 0..{_MAX_CRF}, got {self.crf}")
        if not self.keyframe_interval_s > 0:
            raise ValueError(f"TranscodeConfig.keyframe_interval_s must be > 0, got {self.keyframe_interval_s}")
        if self.audio_bitrate <= 0:
            raise ValueError(f"TranscodeConfig.audio_bitrate must be > 0, got {self.audio_bitrate}")
        if self.max_bitrate_ratio is not None and not self.max_bitrate_ratio > 0:
            raise ValueError(f"TranscodeConfig.max_bitrate_ratio must be > 0 or None, got {self.max_bitrate_ratio}")
        if not self.timeout_s > 0:
            raise ValueError(f"TranscodeConfig.timeout_s must be > 0, got {self.timeout_s}")
        if self.threads < 0:
            raise ValueError(f"TranscodeConfig.threads must be >= 0 (0 = auto), got {self.threads}")
        if self.interpolation.upper() not in Interpolation.__members__:
            raise ValueError(f"TranscodeConfig.interpolation: unknown scaler {self.interpolation!r}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SourceInfo:
    """What the input turned out to be, from its headers and a full decode."""

    codec: str
    pix_fmt: str
    width: int
    height: int
    sar: str  # sample (pixel) aspect ratio as "num:den"
    rotation: int  # clockwise display rotation in degrees: 0, 90, 180 or 270
    fps: float  # average: frames / duration_s
    duration_s: float  # first frame start to last frame end, from the decoded timestamps
    frames: int  # frames produced by a full decode
    bytes: int
    has_audio: bool
    container: str
    # Every frame size of the stream, (width, height, frames), in order of first appearance, and how
    # often consecutive frames changed size (0 for almost every clip).
    sizes: tuple[tuple[int, int, int], ...] = ()
    size_changes: int = 0
    # Whole file, bits per second over the decoded duration.
    bitrate: int | None = None


@dataclass(frozen=True)
class TranscodeResult:
    """The mp4 and what was made: output geometry and timing, the source, and what it cost."""

    video: bytes = field(repr=False)
    source: SourceInfo
    width: int
    height: int
    fps: float
    duration_s: float
    frames: int
    bytes: int
    cpu_seconds: float
    keyframe_interval_frames: int
    has_audio: bool = False
    # Packets that failed to demux or decode and were skipped (the clip survived them).
    decode_errors: int = 0
    warnings: tuple[str, ...] = ()
    # Whole mp4, bits per second over its duration; the VBV cap the video was encoded under (None: none).
    bitrate: int | None = None
    video_maxrate: int | None = None
