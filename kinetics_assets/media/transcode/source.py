"""The input side of a transcode: opening a clip (bytes or a path), telling a damaged or cut file
from one that is no video at all, and reading its video stream's rate and pixel aspect ratio
without trusting broken headers.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import av.error

from kinetics_assets.media.transcode.config import TranscodeError

if TYPE_CHECKING:
    import os

# Raw Annex B streams carry no timing; FFmpeg's raw demuxers report this rate unless the bitstream's
# VUI says otherwise, and we use the same number when a stream reports nothing usable.
DEFAULT_FPS = Fraction(25)
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
# Demuxers that "open" things that are not videos (text rendered as ANSI art, still images).
_NOT_VIDEO_FORMATS = ("tty", "image2", "_pipe")
_MAX_FPS = 1000  # a nominal rate above this is a broken header
MAX_SAR = 100  # a pixel aspect ratio outside 1/100..100 is a broken header


def open_input(data: bytes | str | os.PathLike[str], name: str) -> tuple[av.container.InputContainer, int]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        payload = bytes(data)
        size = len(payload)
        head = payload[:4096]
        source: Any = io.BytesIO(payload)
    else:
        path = Path(data)
        try:
            size = path.stat().st_size
            with path.open("rb") as fh:
                head = fh.read(4096)
        except OSError as exc:
            raise TranscodeError("not_a_video", f"cannot read {path}: {exc}", name=name) from exc
        source = str(path)
    if size == 0:
        raise TranscodeError("empty_file", "the file is empty (0 bytes)", name=name)
    try:
        container = av.open(source, mode="r")
    except av.error.FFmpegError as exc:
        raise _open_failure(exc, head, size, name) from exc
    fmt = container.format.name
    if any(marker in fmt for marker in _NOT_VIDEO_FORMATS):
        container.close()
        raise TranscodeError("not_a_video", f"container {fmt!r} is text or a still image", name=name)
    return container, size


def _open_failure(exc: Exception, head: bytes, size: int, name: str) -> TranscodeError:
    detail = f"{type(exc).__name__}: {exc}"
    if "moov atom not found" in str(exc) or head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return TranscodeError("truncated", f"incomplete mp4/mov ({size} bytes): {detail}", name=name)
    if head[:4] == b"\x1a\x45\xdf\xa3" or head[:4] == b"RIFF":
        return TranscodeError("truncated", f"incomplete mkv/avi ({size} bytes): {detail}", name=name)
    if _looks_like_text(head):
        return TranscodeError("not_a_video", f"looks like a text file: {detail}", name=name)
    return TranscodeError("not_a_video", f"no known container format: {detail}", name=name)


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)


def fraction(value: Fraction | float | str | None) -> Fraction | None:
    if value is None:
        return None
    try:
        frac = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return frac if frac > 0 else None


def nominal_rate(stream: av.video.stream.VideoStream) -> Fraction:
    for candidate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        rate = fraction(candidate)
        if rate is not None and 1 <= rate <= _MAX_FPS:
            return rate.limit_denominator(100_000)
    return DEFAULT_FPS


def sar_of(stream: av.video.stream.VideoStream) -> Fraction:
    try:
        sar = fraction(stream.sample_aspect_ratio)
    except Exception:  # noqa: BLE001 - an unreadable aspect ratio only costs us square pixels
        sar = None
    if sar is None or not Fraction(1, MAX_SAR) <= sar <= MAX_SAR:
        return Fraction(1)
    return sar
