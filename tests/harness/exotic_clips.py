"""Unusual generated inputs for transcode tests: odd codecs, pixel formats, timing and damage.

Everything is encoded with PyAV so tests need no downloaded media. Clips are tiny (<= 2 s, <= 320 px)
so a whole test module builds its inputs in a few seconds.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.harness.clips import frame_pattern

Pattern = Callable[[int, int, int], np.ndarray]


def marker_pattern(index: int, width: int, height: int) -> np.ndarray:
    """Upright reference picture: black, with a white block in the top-left quarter.

    A moving grey bar at the bottom keeps consecutive frames distinct.
    """
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[: height // 2, : width // 2] = 255
    bar = (index * 4) % max(width - 8, 1)
    img[height - height // 8 :, bar : bar + 8] = 128
    return img


def halves_pattern(index: int, width: int, height: int) -> np.ndarray:
    """Left half pure black, right half pure white: the extremes of the colour range."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, width // 2 :] = 255
    return img


def make_exotic_clip(
    target: Path | io.RawIOBase,
    *,
    codec: str = "libx264",
    width: int = 160,
    height: int = 120,
    fps: Fraction | float = 25,
    frames: int = 25,
    pix_fmt: str = "yuv420p",
    container_format: str | None = None,
    options: dict[str, str] | None = None,
    timestamps: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    sar: Fraction | None = None,
    display_rotation_cw: int = 0,
    color_range: int | None = None,
    color_tags: tuple[int, int, int] | None = None,
    pattern: Pattern = frame_pattern,
    audio_codec: str | None = None,
    audio_rate: int = 48000,
    audio_layout: str = "mono",
) -> None:
    """Encode `frames` frames of `pattern` into `target` (a path, or a write-only file object).

    `timestamps` (in `time_base`) give a VFR timeline; `display_rotation_cw` stores each picture
    turned counter-clockwise and tags the stream with a display matrix, so a correct player (and a
    correct transcode) shows `pattern` upright. `sar` tags non-square pixels. `color_tags` is
    (matrix, primaries, transfer) as FFmpeg's AVColorSpace / AVColorPrimaries / AVColorTransfer
    numbers, written as stream tags only (the samples are not converted).
    """
    rate = Fraction(fps).limit_denominator(100_000)
    tb = time_base or Fraction(1) / rate
    target_arg = str(target) if isinstance(target, Path) else target
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(target_arg, mode="w", format=container_format) as out:
        stored_w, stored_h = (height, width) if display_rotation_cw in (90, 270) else (width, height)
        video = out.add_stream(codec, rate=rate, options=dict(options or {}))
        video.width = stored_w
        video.height = stored_h
        video.pix_fmt = pix_fmt
        video.time_base = tb
        video.codec_context.time_base = tb
        if sar is not None:
            video.codec_context.sample_aspect_ratio = sar
        if color_range is not None:
            video.codec_context.color_range = color_range
        if color_tags is not None:
            ctx = video.codec_context
            ctx.colorspace, ctx.color_primaries, ctx.color_trc = color_tags
        if display_rotation_cw:
            video.set_display_rotation(-display_rotation_cw)  # PyAV takes counter-clockwise degrees
        audio = None
        if audio_codec:
            audio = out.add_stream(audio_codec, rate=audio_rate)
            audio.layout = audio_layout
        for i in range(frames):
            upright = pattern(i, width, height)
            stored = np.ascontiguousarray(np.rot90(upright, k=display_rotation_cw // 90))
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame = frame.reformat(format=pix_fmt, dst_color_range=color_range)
            if color_tags is not None:
                frame.colorspace, frame.color_primaries, frame.color_trc = color_tags
            frame.pts = timestamps[i] if timestamps is not None else i * round(1 / (rate * tb))
            frame.time_base = tb
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            seconds = float(frames / rate) if timestamps is None else float(timestamps[-1] * tb)
            encode_tone(out, audio, seconds)


def encode_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    """A 440 Hz tone on every channel of `stream`, `seconds` long, muxed into `out`."""
    rate = stream.rate
    channels = stream.layout.nb_channels
    total = int(seconds * rate)
    t0 = 0
    while t0 < total:
        n = min(1024, total - t0)
        t = (np.arange(t0, t0 + n) / rate).astype(np.float32)
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        pcm = np.stack([tone] * channels)
        frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout=stream.layout.name)
        frame.sample_rate = rate
        frame.pts = t0
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
        t0 += n
    out.mux(stream.encode(None))


def exotic_clip_bytes(**kwargs) -> bytes:
    """Encode a clip in memory (format required, e.g. container_format="matroska")."""
    sink = io.BytesIO()
    make_exotic_clip(sink, **kwargs)
    return sink.getvalue()


class NonSeekableSink(io.RawIOBase):
    """A write-only, unseekable sink: muxers cannot go back to write durations or indexes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)


def raw_elementary_stream(codec: str = "libx264", **kwargs) -> bytes:
    """An Annex B elementary stream (no container, no timestamps): `.h264` or `.h265` content."""
    fmt = {"libx264": "h264", "libx265": "hevc"}[codec]
    return exotic_clip_bytes(codec=codec, container_format=fmt, **kwargs)


def audio_only_bytes(seconds: float = 1.0) -> bytes:
    """An m4a with one AAC track and no video."""
    sink = io.BytesIO()
    with av.open(sink, mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100)
        stream.layout = "mono"
        encode_tone(out, stream, seconds)
    return sink.getvalue()


def top_level_boxes(mp4: bytes) -> list[str]:
    """Names of the top-level ISO BMFF boxes in file order (to check `moov` comes before `mdat`)."""
    names: list[str] = []
    offset = 0
    while offset + 8 <= len(mp4):
        size = int.from_bytes(mp4[offset : offset + 4], "big")
        name = mp4[offset + 4 : offset + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(mp4[offset + 8 : offset + 16], "big")
        elif size == 0:
            size = len(mp4) - offset
        names.append(name)
        if size < 8:
            break
        offset += size
    return names


def track_duration_s(mp4: bytes, track: int = 0) -> float:
    """Duration the mp4 declares for one track (`tkhd`, in the `mvhd` timescale), in seconds.

    This is what players show; the stream duration FFmpeg derives from B-frame dts can differ.
    """
    at = mp4.index(b"mvhd") + 4
    timescale = int.from_bytes(mp4[at + 20 : at + 24] if mp4[at] == 1 else mp4[at + 12 : at + 16], "big")
    at = -1
    for _ in range(track + 1):
        at = mp4.index(b"tkhd", at + 1)
    at += 4
    if mp4[at] == 1:
        duration = int.from_bytes(mp4[at + 28 : at + 36], "big")
    else:
        duration = int.from_bytes(mp4[at + 20 : at + 24], "big")
    return duration / timescale


def corrupt_middle(data: bytes, fraction: float = 0.5, length: int = 4096, seed: int = 0) -> bytes:
    """Overwrite `length` bytes at `fraction` of the file with random bytes (a damaged download)."""
    rng = np.random.default_rng(seed)
    start = int(len(data) * fraction)
    garbage = rng.integers(0, 256, size=min(length, len(data) - start), dtype=np.uint8).tobytes()
    return data[:start] + garbage + data[start + len(garbage) :]
