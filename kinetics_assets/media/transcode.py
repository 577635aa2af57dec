"""Transcode one video clip to a small, seekable, training-friendly H.264 mp4 (PyAV only).

One call handles one clip, synchronously, on one core: decode -> one swscale pass per frame -> libx264,
streamed frame by frame so memory stays flat whatever the clip length. The caller (a Ray task) runs one
of these per CPU, which is why every codec runs single-threaded by default.

Decisions worth knowing (each one is tested in tests/media/test_transcode.py):

- Geometry: the output keeps the source's *display* aspect ratio: non-square pixels (SAR) become
  square and the display rotation (display matrix, 90/180/270) is applied so the picture is upright.
  The shorter display side becomes `short_side` (default 360); sources already smaller are never
  upscaled, only made square-pixel. Both sides are even (yuv420p needs it).
- Resolution changes mid-stream: the output size is chosen from the dominant size (the one most
  frames have; the larger on a tie), and every frame is scaled to fit inside it with its own display
  aspect kept and padded black (letterbox or pillarbox), centred. Nothing is stretched. This needs the
  sizes in advance, so the first pass stops encoding at the first change, decodes on to count the
  sizes, and a second pass encodes: only such clips pay for a second decode. The sizes seen and the
  number of changes are in `SourceInfo.sizes` / `size_changes`.
- Colour: always 8-bit yuv420p, limited (tv) range, whatever comes in (10-bit, 4:4:4, yuvj / full
  range), converted in the same swscale pass as the resize. The YUV matrix is kept (no BT.601 <->
  BT.709 conversion); matrix, primaries and transfer tags are copied, untagged stays untagged, and
  an RGB source is converted with, and tagged as, BT.709 (HD sizes) or BT.601 (`output_matrix`). The
  limited-range flag is always written: x264 writes it only in a signal-type block, which an
  untagged output gets from `videoformat=component`; without it an AV1/VP9 source's "limited" read
  back as unspecified.
- Time: every decoded frame is encoded once with its own timestamp (VFR stays VFR; nothing dropped or
  duplicated). Timestamps are chosen like FFmpeg's best-effort timestamp (pts, or dts when pts proves
  less reliable, e.g. packed B-frames in AVI), each source shifted by its own first value (so a
  stream that switches from pts to dts keeps a regular timeline) and forced strictly increasing.
  Streams with no timestamps at all (raw Annex B H.264/HEVC) get a constant-rate timeline at the
  stream's rate, which FFmpeg reports as 25 fps when the bitstream does not say otherwise.
- Size: CRF sets the quality, and a rate cap keeps the output from outgrowing its source (measured
  in BENCHMARKS.md, "Rate cap"). When the source's duration is known from its headers, its bitrate
  (whole file) times `max_bitrate_ratio` (1.0) less the output's audio bitrate is the video's budget,
  and x264's VBV `maxrate` is set so that budget holds with its 1 s buffer starting full (maxrate =
  budget * d / (d + 1) for d seconds; floor 64 kb/s); it only binds where CRF would spend more than
  the source had; AAC is encoded at the source's audio bitrate when that is lower than `audio_bitrate` (not below
  32 kb/s). A source whose headers carry no duration (raw streams) is timed by a demux-only pass
  (packets / rate). The source's and the output's bitrates and the cap are reported with the result.
- Keyframes: a keyframe every `keyframe_interval_s` (x264 keyint and min-keyint from the average frame
  rate; source picture types are not passed on); scene cuts may add more. `moov` is in front
  (faststart), written entirely in memory.
- Audio: the first audio stream, any codec, is re-encoded to AAC (mono or stereo, the source rate when
  AAC supports it, else 48 kHz) on a contiguous timeline starting at its offset from the first video
  frame; parameter changes mid-stream are resampled. Audio never costs the video: undecodable audio
  packets are skipped and counted, and if no audio frame decodes at all (or the AAC encoder fails) the
  clip is kept without audio (or with the audio up to the failure) and a warning says so. The output
  never carries an empty audio track: video packets wait in memory until the first audio frame decodes.
- Damage: packets that fail to demux or decode (video or audio) are counted (`decode_errors`) and
  skipped, and a clip that ends early is kept with a warning; the clip fails with `decode_error` (or
  `truncated`) only when no video frame at all could be decoded.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import io
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from kinetics_assets.limits import FrameLimits

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator

    from av.video.plane import VideoPlane
    from av.video.stream import VideoStream

__all__ = [
    "ERROR_KINDS",
    "Preset",
    "SourceInfo",
    "TranscodeConfig",
    "TranscodeError",
    "TranscodeResult",
    "probe",
    "transcode",
]

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

# Raw Annex B streams carry no timing; FFmpeg's raw demuxers report this rate unless the bitstream's
# VUI says otherwise, and we use the same number when a stream reports nothing usable.
DEFAULT_FPS = Fraction(25)
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
# Demuxers that "open" things that are not videos (text rendered as ANSI art, still images).
_NOT_VIDEO_FORMATS = ("tty", "image2", "_pipe")
# Largest time base denominator we hand to x264/the muxer unchanged (x264 stores it in 32 bits).
_MAX_TIME_BASE_DEN = 2**31 - 1
# FFmpeg's `max_pixels` decoder option is an int.
_MAX_FFMPEG_INT = 2**31 - 1
# Rate cap: never below this (a cap under it costs more quality than it saves bytes), a 1 s buffer.
_MIN_VIDEO_MAXRATE = 64_000
_VBV_BUFFER_S = 1.0
_MIN_AUDIO_BITRATE = 32_000
_MIN_SIDE = 2  # 4:2:0 chroma needs even sides, 2 at the least
_MAX_CRF = 51  # the top of x264's CRF scale
_MAX_FPS = 1000  # a nominal rate above this is a broken header
_MAX_SAR = 100  # a pixel aspect ratio outside 1/100..100 is a broken header


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
        if self.interpolation.upper() not in av.video.reformatter.Interpolation.__members__:
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


def transcode(
    data: bytes | str | os.PathLike[str],
    config: TranscodeConfig = TranscodeConfig(),
    *,
    name: str = "",
) -> TranscodeResult:
    """Transcode one clip (bytes or a path) to H.264/AAC mp4; raises TranscodeError only."""
    cpu_start = time.process_time()
    try:
        try:
            return _Transcode(data, config, name).run(cpu_start)
        except _SizesChangeError as change:
            release_av_cycles()  # the second pass shares the first one's timeout_s budget
            return _Transcode(
                data, config, name, canvas=change.canvas, size_sars=change.sars, deadline=change.deadline
            ).run(cpu_start)
    except TranscodeError:
        raise
    except MemoryError as exc:
        raise TranscodeError("limit_exceeded", f"out of memory ({exc})", name=name) from exc
    except Exception as exc:  # anything unforeseen still leaves as a TranscodeError
        raise TranscodeError("decode_error", f"{type(exc).__name__}: {exc}", name=name) from exc
    finally:
        release_av_cycles()


def release_av_cycles() -> None:
    """Free the clip's PyAV objects now. PyAV containers, streams and filter graphs form reference
    cycles that hold decoded frames and codec buffers; left to Python's allocation-count GC, a worker
    reached 288 MiB after 25 eight-second clips instead of 26 MiB (BENCHMARKS.md). The cycles are
    young, so a generation-1 collection (~0.03 ms) finds them.
    """
    gc.collect(1)


def probe(
    data: bytes | str | os.PathLike[str],
    *,
    name: str = "",
    config: TranscodeConfig = TranscodeConfig(),
) -> SourceInfo:
    """Describe a clip by fully decoding its video (no encoding); raises TranscodeError only."""
    try:
        return _Transcode(data, config, name, encode=False).run(time.process_time()).source
    except TranscodeError:
        raise
    except Exception as exc:
        raise TranscodeError("decode_error", f"{type(exc).__name__}: {exc}", name=name) from exc


# --------------------------------------------------------------------------------------------------
# Input


def _open_input(data: bytes | str | os.PathLike[str], name: str) -> tuple[av.container.InputContainer, int]:
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


def _fraction(value: Fraction | float | str | None) -> Fraction | None:
    if value is None:
        return None
    try:
        frac = Fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return frac if frac > 0 else None


def _nominal_rate(stream: av.video.stream.VideoStream) -> Fraction:
    for candidate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        rate = _fraction(candidate)
        if rate is not None and 1 <= rate <= _MAX_FPS:
            return rate.limit_denominator(100_000)
    return DEFAULT_FPS


def _clockwise_rotation(frame: av.VideoFrame) -> int:
    """Display rotation from the frame's display matrix, as clockwise multiples of 90 degrees.

    PyAV 18 exposes the matrix as frame side data (FFmpeg attaches the stream's matrix to every decoded
    frame) and `VideoFrame.rotation` reads its angle, counter-clockwise, in [-180, 180].
    """
    return round(-frame.rotation / 90.0) % 4 * 90


# FFmpeg's AVColorSpace values that swscale has coefficients for, by its names.
_SWS_MATRIX = {1: "itu709", 4: "fcc", 5: "itu601", 6: "itu601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
_AVCOL_BT709 = 1
_AVCOL_SMPTE170M = 6
_AVCOL_UNSPECIFIED = 2
_AVCOL_RESERVED = 3
# Sizes from which an RGB source's output is tagged BT.709 (HD), as players assume.
_HD_MIN_WIDTH = 1280
_SD_MAX_HEIGHT = 576


def output_matrix(frame: av.VideoFrame) -> int:
    """The YUV matrix (AVColorSpace) of the output.

    A YUV source's matrix is kept as it is, untagged included: its samples are not re-matrixed, and
    an untagged output is read exactly as its untagged source by the same reader (FFmpeg-based
    readers assume BT.601 for both; a guess would change what a training pipeline sees). RGB sources
    are converted by us, so their matrix is ours to name: BT.709 from 1280 wide or over 576 lines,
    else BT.601 (what players assume for such sizes).
    """
    cs = int(frame.colorspace) if frame.colorspace is not None else _AVCOL_UNSPECIFIED
    if frame.format.is_rgb or cs == 0:  # 0 = RGB/GBR
        return _AVCOL_BT709 if frame.width >= _HD_MIN_WIDTH or frame.height > _SD_MAX_HEIGHT else _AVCOL_SMPTE170M
    return _AVCOL_UNSPECIFIED if cs == _AVCOL_RESERVED else cs


def _sar_of(stream: av.video.stream.VideoStream) -> Fraction:
    try:
        sar = _fraction(stream.sample_aspect_ratio)
    except Exception:  # noqa: BLE001 - an unreadable aspect ratio only costs us square pixels
        sar = None
    if sar is None or not Fraction(1, _MAX_SAR) <= sar <= _MAX_SAR:
        return Fraction(1)
    return sar


# --------------------------------------------------------------------------------------------------
# Geometry and timing


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2.0))


def output_size(width: int, height: int, sar: Fraction, rotation: int, short_side: int) -> tuple[int, int]:
    """Upright, square-pixel output size with the display short side at most `short_side`."""
    display_w = width * sar.numerator / sar.denominator
    display_h = float(height)
    if rotation in (90, 270):
        display_w, display_h = display_h, display_w
    scale = min(1.0, short_side / min(display_w, display_h))
    return _even(display_w * scale), _even(display_h * scale)


class _Timeline:
    """Gives every decoded frame a strictly increasing timestamp, starting at 0, in `time_base`.

    Mirrors FFmpeg's best-effort timestamp: use pts unless pts has gone backwards more often than dts
    (e.g. packed B-frames in AVI label frames with reordered pts). Frames are observed LOOKAHEAD
    frames before they are stamped, so the first fault already corrects the frame before it.
    Streams without any timestamps (raw Annex B) get frame index / nominal rate.
    """

    LOOKAHEAD = 2

    def __init__(self, first_frame: av.VideoFrame, rate: Fraction) -> None:
        self.rate = rate
        src_tb = first_frame.time_base
        self.synthetic = (first_frame.pts is None and first_frame.dts is None) or src_tb is None
        if self.synthetic or src_tb is None:
            self.time_base = Fraction(1) / rate
            self.source_time_base = self.time_base
        else:
            self.source_time_base = Fraction(src_tb)
            tb = self.source_time_base
            if tb.denominator > _MAX_TIME_BASE_DEN or (tb.numerator != 1 and tb > Fraction(1, 10)):
                tb = Fraction(1, 90000)
            self.time_base = tb
        self.step = max(1, round(1 / (rate * self.time_base)))  # nominal frame duration in ticks
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._faulty_pts = 0
        self._faulty_dts = 0
        # Each source is shifted by its own first value: in an AVI with packed B-frames the decoder
        # delay puts dts ticks ahead of pts, and the stream switches from pts to dts after the first
        # reordered frame (one shared start gave 0, 2, 3, ...).
        self._start_pts: int | None = None
        self._start_dts: int | None = None
        self._start: int | None = None  # start of the source the first frame was stamped from
        self.last: int | None = None
        self.last_duration = self.step

    def _to_out(self, value: int) -> int:
        if self.time_base == self.source_time_base:
            return value
        return round(value * self.source_time_base / self.time_base)

    def observe(self, frame: av.VideoFrame) -> None:
        """Count timestamp faults in decode order (call for each frame as it leaves the decoder)."""
        pts, dts = frame.pts, frame.dts
        if self.synthetic:
            return
        if pts is not None and self._start_pts is None:
            self._start_pts = self._to_out(pts)
        if dts is not None and self._start_dts is None:
            self._start_dts = self._to_out(dts)
        if dts is not None:
            self._faulty_dts += self._last_dts is not None and dts <= self._last_dts
            self._last_dts = dts
        if pts is not None:
            self._faulty_pts += self._last_pts is not None and pts <= self._last_pts
            self._last_pts = pts

    def stamp(self, frame: av.VideoFrame) -> int:
        """The output timestamp of the next frame in display order."""
        if self.synthetic:
            ts = 0 if self.last is None else self.last + self.step
        else:
            pts, dts = frame.pts, frame.dts
            use_pts = pts is not None and (dts is None or self._faulty_pts <= self._faulty_dts)
            chosen = pts if use_pts else dts
            if chosen is None:
                ts = 0 if self.last is None else self.last + self.step
            else:
                start = self._start_pts if use_pts else self._start_dts
                if start is None:  # a frame stamped without being observed
                    start = self._to_out(chosen)
                if self._start is None:
                    self._start = start
                ts = self._to_out(chosen) - start
            if self.last is not None and ts <= self.last:
                ts = self.last + self.step
            if frame.duration and frame.duration > 0:
                self.last_duration = max(1, self._to_out(frame.duration))
            elif self.last is not None:
                self.last_duration = ts - self.last
        self.last = ts
        return ts

    @property
    def start_seconds(self) -> float:
        """Source time of the first frame, in seconds (to place audio relative to it)."""
        if self.synthetic or self._start is None:
            return 0.0
        return float(self._start * self.time_base)

    @property
    def duration_ticks(self) -> int:
        return 0 if self.last is None else self.last + self.last_duration


# --------------------------------------------------------------------------------------------------
# The transcode


class _SizesChangeError(Exception):
    """Raised by a first pass that found frames of more than one size: encode again on `canvas`."""

    def __init__(self, canvas: tuple[int, int], sars: dict[tuple[int, int], Fraction], deadline: float) -> None:
        super().__init__(f"frame size changes mid-stream; output canvas {canvas[0]}x{canvas[1]}")
        self.canvas = canvas
        self.sars = sars
        self.deadline = deadline


class _Transcode:
    """One transcode (or, with encode=False, one probe) of one clip; single use.

    With `canvas` (display-oriented output size) every frame is fitted into it and padded: the second
    pass of a clip whose frame size changes.
    """

    def __init__(
        self,
        data: bytes | str | os.PathLike[str],
        config: TranscodeConfig,
        name: str,
        *,
        encode: bool = True,
        canvas: tuple[int, int] | None = None,
        size_sars: dict[tuple[int, int], Fraction] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.data = data
        self.config = config
        self.name = name
        self.encode = encode
        self.canvas = canvas
        # frame sizes: frames per size (in order of first appearance), each size's SAR, changes
        self.size_counts: dict[tuple[int, int], int] = {}
        self.size_sars: dict[tuple[int, int], Fraction] = dict(size_sars or {})
        self.size_changes = 0
        self.last_size: tuple[int, int] | None = None
        self.fits: dict[tuple[int, int], tuple[int, int]] = {}
        self.counting_only = False  # a first pass that saw a size change only counts from then on
        self.deadline = time.monotonic() + config.timeout_s if deadline is None else deadline
        self.warnings: list[str] = []
        self.decode_errors = 0
        self.frames = 0
        self.demux_failed = False
        # video
        self.timeline: _Timeline | None = None
        self.video_pending: collections.deque[av.VideoFrame] = collections.deque()
        self.reformatter = VideoReformatter()
        self.first_frame: dict[str, Any] = {}
        self.rotation = 0
        self.keyint = 0
        # output
        self.out_buffer = io.BytesIO()
        self.output: av.container.OutputContainer | None = None
        self.out_video: Any = None
        self.held_packets: list[av.Packet] = []  # video packets waiting for the audio decision
        # audio: "absent" -> no audio wanted; "waiting" -> no frame decoded yet; "on"; "off" (dropped)
        self.audio_state = "absent"
        self.astream: Any = None
        self.out_audio: Any = None
        self.audio_early: list[av.AudioFrame] = []  # decoded before the first video frame
        self.audio_resampler: av.AudioResampler | None = None
        self.audio_input_key: tuple[str, str, int] | None = None
        self.audio_offset = 0
        self.audio_samples = 0
        self.audio_packets = 0

    def fail(self, kind: str, message: str) -> TranscodeError:
        return TranscodeError(kind, message, name=self.name)

    # -- driver ------------------------------------------------------------------------------------

    def run(self, cpu_start: float) -> TranscodeResult:
        container, self.size = _open_input(self.data, self.name)
        try:
            with container:
                self._select_streams(container)
                for kind, frame in self._decoded(container):
                    if kind == "video":
                        self._on_video(frame)
                    elif not self.counting_only:
                        self._on_audio(frame)
                if self.counting_only:
                    raise _SizesChangeError(self._canvas(), self.size_sars, self.deadline)
                while self.video_pending:
                    self._emit_video(self.video_pending.popleft())
                if self.frames == 0:
                    if self.demux_failed:
                        raise self.fail("truncated", "the file ends before any video frame could be decoded")
                    raise self.fail(
                        "decode_error",
                        f"no decodable video frame ({self.decode_errors} packets failed to decode)",
                    )
                declared = self.vstream.frames
                if declared and self.frames < declared - 1:
                    self.warnings.append(f"input ends early: {self.frames} of {declared} declared frames decoded")
                video = self._finish() if self.encode else b""
        finally:
            if self.output is not None:
                # A no-op after a successful _finish; after a failure, it must not mask the failure.
                with contextlib.suppress(Exception):
                    self.output.close()
        return self._result(video, time.process_time() - cpu_start)

    def _select_streams(self, container: av.container.InputContainer) -> None:
        video_streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not video_streams:
            if container.streams.audio:
                raise self.fail("no_video_stream", f"{container.format.name} file has audio but no video")
            raise self.fail("not_a_video", f"{container.format.name} file has no video stream")
        vstream = video_streams[0]
        vctx = vstream.codec_context
        if vctx is None or not vctx.codec:
            raise self.fail("decode_error", f"no decoder for the video codec of stream #{vstream.index}")
        vctx.thread_count = self.config.threads
        if self.config.max_pixels_per_frame is not None:
            # FFmpeg then refuses to allocate a larger picture (an in-band SPS can switch a "16x16"
            # stream to 16384x16384): the check in _on_video would only see it after allocation.
            vctx.options = {**vctx.options, "max_pixels": str(min(self.config.max_pixels_per_frame, _MAX_FFMPEG_INT))}
        self.vstream = vstream
        self.source_has_audio = bool(container.streams.audio)
        self.container_name = container.format.name
        self.rate = _nominal_rate(vstream)
        self.sar = _sar_of(vstream)
        self._check_header_limits(container, vstream)
        self._plan_rates(container)
        if self.encode and container.streams.audio:
            astream = container.streams.audio[0]
            if astream.codec_context is None or not astream.codec_context.codec:
                self.warnings.append("audio dropped: no decoder for the audio codec")
            else:
                astream.codec_context.thread_count = 1
                self.astream = astream
                self.audio_state = "waiting"

    def _plan_rates(self, container: av.container.InputContainer) -> None:
        """Output audio bitrate and the video's VBV cap, from the source's header bitrate."""
        cfg = self.config
        self.audio_bitrate = cfg.audio_bitrate
        if container.streams.audio:
            source_audio = container.streams.audio[0].bit_rate or 0
            if source_audio > 0:
                self.audio_bitrate = min(cfg.audio_bitrate, max(_MIN_AUDIO_BITRATE, source_audio))
        self.video_maxrate: int | None = None
        if cfg.max_bitrate_ratio is None:
            return
        seconds = container.duration / av.time_base if container.duration else 0.0
        if not seconds > 0:
            seconds = self._packet_seconds()
        if not seconds > 0:
            return
        budget = cfg.max_bitrate_ratio * self.size * 8 / seconds
        if container.streams.audio:
            budget -= self.audio_bitrate
        # The VBV buffer starts full, so a clip may spend maxrate * seconds + buffer: keep that within
        # the budget (buffer = maxrate * _VBV_BUFFER_S).
        maxrate = budget * seconds / (seconds + _VBV_BUFFER_S)
        self.video_maxrate = max(_MIN_VIDEO_MAXRATE, int(maxrate))

    def _packet_seconds(self) -> float:
        """Duration of a stream whose headers have none (raw Annex B): video packets / nominal rate.

        A demux-only pass (no decoding): a small fraction of the transcode's cost, paid by such
        streams only. 0.0 when it cannot be had.
        """
        try:
            if isinstance(self.data, (bytes, bytearray, memoryview)):
                source: Any = io.BytesIO(bytes(self.data))
            else:
                source = str(self.data)
            with av.open(source, mode="r") as container:
                stream = container.streams[self.vstream.index]
                packets = 0
                for packet in container.demux(stream):
                    packets += packet.size > 0
                    if packets % 256 == 0:
                        self._check_deadline()
            return packets / float(self.rate)
        except (av.error.FFmpegError, IndexError, OSError):
            return 0.0

    def _check_header_limits(self, container: av.container.InputContainer, vstream: VideoStream) -> None:
        cfg = self.config
        if cfg.max_pixels_per_frame is not None and vstream.width * vstream.height > cfg.max_pixels_per_frame:
            raise self.fail(
                "limit_exceeded",
                f"frame size {vstream.width}x{vstream.height} exceeds max_pixels_per_frame={cfg.max_pixels_per_frame}",
            )
        if cfg.max_duration_s is not None and container.duration is not None:
            seconds = container.duration / av.time_base
            if seconds > cfg.max_duration_s:
                raise self.fail(
                    "limit_exceeded",
                    f"declared duration {seconds:.1f} s exceeds max_duration_s={cfg.max_duration_s}",
                )
        if cfg.max_frames is not None and vstream.frames and vstream.frames > cfg.max_frames:
            raise self.fail("limit_exceeded", f"declared {vstream.frames} frames exceed max_frames={cfg.max_frames}")

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.fail(
                "timeout",
                f"not finished after timeout_s={self.config.timeout_s} ({self.frames} frames decoded)",
            )

    # -- decoding ----------------------------------------------------------------------------------

    def _audio_live(self) -> bool:
        return self.audio_state in ("waiting", "on")

    def _decoded(self, container: av.container.InputContainer) -> Iterator[tuple[str, Any]]:
        streams = [self.vstream] + ([self.astream] if self.astream is not None else [])
        packets = container.demux(streams)
        while True:
            self._check_deadline()
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                # A damaged or cut container: keep what was decoded, flush the decoders below.
                self.demux_failed = True
                self.decode_errors += 1
                self.warnings.append(f"input ends early or is damaged: {exc}")
                break
            if packet.stream is self.vstream:
                for frame in self._decode_video(packet):
                    yield "video", frame
            elif self._audio_live():
                for audio_frame in self._decode_audio(packet):
                    yield "audio", audio_frame
        if self.demux_failed:
            yield from self._drained()

    def _drained(self) -> Iterator[tuple[str, Any]]:
        """demux() sends no flush packets after an error: drain the decoders ourselves."""
        for frame in self._decode_video(None):
            yield "video", frame
        if self._audio_live():
            for audio_frame in self._decode_audio(None):
                yield "audio", audio_frame

    def _decode_video(self, packet: av.Packet | None) -> list[av.VideoFrame]:
        ctx = self.vstream.codec_context
        try:
            return ctx.decode(packet)
        except av.error.FFmpegError:
            limit = self.config.max_pixels_per_frame
            if limit is not None and ctx.width * ctx.height > limit:
                # The decoder refused the picture because of `max_pixels`: the clip is over the
                # limit, not merely damaged (skipping those frames would hide the bomb).
                raise self.fail(
                    "limit_exceeded",
                    f"the stream switches to {ctx.width}x{ctx.height} frames after {self.frames} decoded frames, "
                    f"over max_pixels_per_frame={limit}",
                ) from None
            self.decode_errors += 1
            return []

    def _decode_audio(self, packet: av.Packet | None) -> list[av.AudioFrame]:
        try:
            return self.astream.codec_context.decode(packet)
        except av.error.InvalidDataError:
            self.decode_errors += 1
            return []
        except av.error.FFmpegError as exc:
            self._drop_audio(f"audio decoder failed: {exc}")
            return []

    # -- video -------------------------------------------------------------------------------------

    def _on_video(self, frame: av.VideoFrame) -> None:
        cfg = self.config
        if cfg.max_pixels_per_frame is not None and frame.width * frame.height > cfg.max_pixels_per_frame:
            raise self.fail(
                "limit_exceeded",
                f"frame {self.frames} is {frame.width}x{frame.height}, over max_pixels_per_frame="
                f"{cfg.max_pixels_per_frame}",
            )
        self._count_size(frame)
        if self.timeline is None:
            self._start_video(frame)
        self.frames += 1
        if cfg.max_frames is not None and self.frames > cfg.max_frames:
            raise self.fail("limit_exceeded", f"more than max_frames={cfg.max_frames} frames")
        if self.size_changes and self.encode and self.canvas is None:
            self.counting_only = True  # the output size depends on every size: a second pass encodes
        if self.counting_only:
            return
        self._timeline().observe(frame)
        self.video_pending.append(frame)
        if len(self.video_pending) > _Timeline.LOOKAHEAD:
            self._emit_video(self.video_pending.popleft())

    def _count_size(self, frame: av.VideoFrame) -> None:
        size = (frame.width, frame.height)
        if size not in self.size_counts:
            self.size_counts[size] = 0
            if size not in self.size_sars:
                # The decoder's SAR follows the sequence header in use (each size can bring its own).
                later = len(self.size_counts) > 1
                sar = _fraction(self.vstream.codec_context.sample_aspect_ratio) if later else None
                self.size_sars[size] = sar if sar is not None and Fraction(1, _MAX_SAR) <= sar <= _MAX_SAR else self.sar
        self.size_counts[size] += 1
        if self.last_size is not None and size != self.last_size:
            self.size_changes += 1
        self.last_size = size

    def _canvas(self) -> tuple[int, int]:
        """Output size of a clip with several frame sizes: that of the size most frames have."""
        (width, height), _ = max(self.size_counts.items(), key=lambda item: (item[1], item[0][0] * item[0][1]))
        return output_size(width, height, self.size_sars[(width, height)], self.rotation, self.config.short_side)

    def _fit(self, size: tuple[int, int]) -> tuple[int, int]:
        """Pre-rotation scale size of a frame of `size` inside the canvas, its display aspect kept."""
        if size not in self.fits:
            sar = self.size_sars.get(size, self.sar)
            display_w, display_h = size[0] * sar.numerator / sar.denominator, float(size[1])
            if self.rotation in (90, 270):
                display_w, display_h = display_h, display_w
            scale = min(self.out_w / display_w, self.out_h / display_h)
            fit_w = min(self.out_w, _even(display_w * scale))
            fit_h = min(self.out_h, _even(display_h * scale))
            self.fits[size] = (fit_h, fit_w) if self.rotation in (90, 270) else (fit_w, fit_h)
        return self.fits[size]

    def _timeline(self) -> _Timeline:
        """The timeline, which the first video frame starts."""
        if self.timeline is None:
            raise RuntimeError("no video frame has started the timeline yet")
        return self.timeline

    def _output(self) -> av.container.OutputContainer:
        if self.output is None:
            raise RuntimeError("the output is not open")
        return self.output

    def _start_video(self, frame: av.VideoFrame) -> None:
        self.timeline = _Timeline(frame, self.rate)
        self.rotation = _clockwise_rotation(frame)
        self.first_frame = {"pix_fmt": frame.format.name, "width": frame.width, "height": frame.height}
        self.matrix = output_matrix(frame)
        if self.canvas is not None:
            self.out_w, self.out_h = self.canvas
        else:
            self.out_w, self.out_h = output_size(
                frame.width, frame.height, self.sar, self.rotation, self.config.short_side
            )
        # Scale to the pre-rotation size; the rotation is a cheap plane transpose afterwards.
        if self.rotation in (90, 270):
            self.scale_w, self.scale_h = self.out_h, self.out_w
        else:
            self.scale_w, self.scale_h = self.out_w, self.out_h
        self.keyint = max(1, round(float(self.rate) * self.config.keyframe_interval_s))
        if self.encode:
            self._open_output(frame)
            if self.audio_early:
                early, self.audio_early = self.audio_early, []
                for audio_frame in early:
                    self._on_audio(audio_frame)

    def _emit_video(self, frame: av.VideoFrame) -> None:
        cfg = self.config
        timeline = self._timeline()
        ts = timeline.stamp(frame)
        if cfg.max_duration_s is not None and float(ts * timeline.time_base) > cfg.max_duration_s:
            raise self.fail("limit_exceeded", f"runs past max_duration_s={cfg.max_duration_s}")
        if self.encode:
            self._encode_video(frame, ts)

    def _source_range(self, frame: av.VideoFrame) -> int:
        if frame.color_range in (1, 2):
            return frame.color_range
        return 2 if frame.format.name.startswith("yuvj") else 1

    def _encode_video(self, frame: av.VideoFrame, ts: int) -> None:
        if self.canvas is not None:
            scale_w, scale_h = self._fit((frame.width, frame.height))
        else:
            scale_w, scale_h = self.scale_w, self.scale_h
        try:
            # One swscale pass: size, 8-bit 4:2:0 and full -> limited range together.
            scaled = self.reformatter.reformat(
                frame,
                width=scale_w,
                height=scale_h,
                format="yuv420p",
                # RGB is converted with the output's matrix; YUV keeps its own (None: the frame's).
                # PyAV takes swscale's matrix names too (its stub says int only).
                dst_colorspace=cast("int | None", _SWS_MATRIX.get(self.matrix) if frame.format.is_rgb else None),
                src_color_range=self._source_range(frame),
                dst_color_range=1,
                interpolation=self.config.interpolation.upper(),
                threads=self.config.threads,
            )
            if self.rotation:
                scaled = _rotate_yuv420p(scaled, self.rotation)
            if (scaled.width, scaled.height) != (self.out_w, self.out_h):
                scaled = _pad_yuv420p(scaled, self.out_w, self.out_h)
        except Exception as exc:
            raise self.fail("decode_error", f"cannot convert frame at tick {ts}: {exc}") from exc
        scaled.pts = ts
        scaled.time_base = self._timeline().time_base
        scaled.duration = 0
        scaled.pict_type = av.video.frame.PictureType.NONE  # let x264 place keyframes, not the source
        scaled.color_range = 1
        try:
            packets = self.out_video.encode(scaled)
        except Exception as exc:
            raise self.fail("encode_error", f"encoding the frame at tick {ts} failed: {exc}") from exc
        self._mux_video(packets)

    # -- output ------------------------------------------------------------------------------------

    def _open_output(self, frame: av.VideoFrame) -> None:
        cfg = self.config
        try:
            # faststart re-reads the finished file to move `moov` in front; io_open serves that
            # second read from the same in-memory buffer.
            self.output = output = av.open(
                self.out_buffer,
                mode="w",
                format="mp4",
                options={"movflags": "+faststart"},
                io_open=lambda *_: _BufferReader(self.out_buffer),  # PyAV passes (url, flags, options)
            )
            options = {
                "preset": cfg.preset,
                "crf": str(cfg.crf),
                "g": str(self.keyint),
                "keyint_min": str(self.keyint),
            }
            if self.matrix == _AVCOL_UNSPECIFIED:
                # x264 writes the range flag only in a signal-type block, which it writes only with a
                # colour tag or a video format: "component" makes it write one that says "limited"
                # while the matrix stays unspecified, as the source's is.
                options["x264-params"] = "videoformat=component"
            if self.video_maxrate is not None:
                options["maxrate"] = str(self.video_maxrate)
                options["bufsize"] = str(int(self.video_maxrate * _VBV_BUFFER_S))
            out_video = output.add_stream("libx264", rate=self.rate, options=options)
            out_video.width = self.out_w
            out_video.height = self.out_h
            out_video.pix_fmt = "yuv420p"
            out_video.time_base = self._timeline().time_base
            ctx = out_video.codec_context
            ctx.time_base = self._timeline().time_base
            ctx.thread_count = cfg.threads
            ctx.color_range = 1  # limited, always signalled (see the x264 options above)
            if self.matrix != _AVCOL_UNSPECIFIED:
                ctx.colorspace = self.matrix
            if frame.color_primaries not in (None, 0, 2):
                ctx.color_primaries = frame.color_primaries
            if frame.color_trc not in (None, 0, 2):
                ctx.color_trc = frame.color_trc
            self.out_video = out_video
        except Exception as exc:
            raise self.fail("encode_error", f"cannot set up the H.264 encoder: {exc}") from exc

    def _mux_video(self, packets: list[av.Packet]) -> None:
        # The stream list is fixed once the header is written, so video waits until we know
        # whether an audio track will exist.
        if self.audio_state == "waiting":
            self.held_packets.extend(packets)
            return
        try:
            self._output().mux(packets)
        except Exception as exc:
            raise self.fail("encode_error", f"writing video packets failed: {exc}") from exc

    def _release_held_packets(self) -> None:
        held, self.held_packets = self.held_packets, []
        self._mux_video(held)

    def _finish(self) -> bytes:
        try:
            flushed = self.out_video.encode(None)
        except Exception as exc:
            raise self.fail("encode_error", f"flushing the H.264 encoder failed: {exc}") from exc
        if self.audio_state == "waiting":
            self._drop_audio("no audio frame could be decoded")
        self._mux_video(flushed)
        if self.audio_state == "on":
            self._flush_audio()
        try:
            self._output().close()
        except Exception as exc:
            raise self.fail("encode_error", f"writing the mp4 failed: {exc}") from exc
        return self.out_buffer.getvalue()

    # -- audio -------------------------------------------------------------------------------------

    def _on_audio(self, frame: av.AudioFrame) -> None:
        if not self._audio_live():
            return
        if self.output is None:
            self.audio_early.append(frame)  # no video yet, so no output to put it in
            return
        if self.audio_state == "waiting":
            self._open_audio_output(frame)
            if self.audio_state != "on":
                return
        try:
            self._encode_audio(frame)
        except Exception as exc:  # noqa: BLE001 - an audio failure drops the audio track, never the clip
            self._drop_audio(f"AAC encoding failed after {self.audio_samples} samples: {exc}")

    def _open_audio_output(self, frame: av.AudioFrame) -> None:
        try:
            out_rate = frame.sample_rate if frame.sample_rate in _AAC_RATES else 48000
            out_audio = self._output().add_stream("aac", rate=out_rate)
            out_audio.layout = "mono" if frame.layout.nb_channels == 1 else "stereo"
            out_audio.bit_rate = self.audio_bitrate
            out_audio.time_base = Fraction(1, out_rate)
            out_audio.codec_context.thread_count = 1
        except Exception as exc:  # noqa: BLE001 - an audio failure drops the audio track, never the clip
            self._drop_audio(f"cannot set up the AAC encoder: {exc}")
            return
        self.out_audio = out_audio
        self.audio_state = "on"
        # Place the audio where it starts relative to the first video frame (never before 0).
        start = frame.time if frame.time is not None else self._timeline().start_seconds
        self.audio_offset = max(0, round((start - self._timeline().start_seconds) * out_rate))
        self._release_held_packets()

    def _encode_audio(self, frame: av.AudioFrame | None) -> None:
        out = self.out_audio
        if frame is not None:
            key = (frame.format.name, frame.layout.name, frame.sample_rate)
            if key != self.audio_input_key or self.audio_resampler is None:
                # New (or changed) input parameters: drain the old resampler, start a new one.
                if self.audio_resampler is not None:
                    self._encode_resampled(self.audio_resampler.resample(None))
                self.audio_resampler = av.AudioResampler(
                    format="fltp", layout=out.layout.name, rate=out.codec_context.sample_rate
                )
                self.audio_input_key = key
            frame.pts = None  # the timeline is contiguous: pts come from the sample count
            self._encode_resampled(self.audio_resampler.resample(frame))
        elif self.audio_resampler is not None:
            self._encode_resampled(self.audio_resampler.resample(None))

    def _encode_resampled(self, frames: list[av.AudioFrame]) -> None:
        rate = self.out_audio.codec_context.sample_rate
        for frame in frames:
            frame.pts = self.audio_offset + self.audio_samples
            frame.time_base = Fraction(1, rate)
            self.audio_samples += frame.samples
            packets = self.out_audio.encode(frame)
            self._output().mux(packets)
            self.audio_packets += len(packets)

    def _flush_audio(self) -> None:
        try:
            self._encode_audio(None)
            packets = self.out_audio.encode(None)
            self._output().mux(packets)
            self.audio_packets += len(packets)
        except Exception as exc:  # noqa: BLE001 - an audio failure drops the audio track, never the clip
            self._drop_audio(f"flushing the AAC encoder failed: {exc}")

    def _drop_audio(self, reason: str) -> None:
        if not self._audio_live():
            return
        was_waiting = self.audio_state == "waiting"
        self.audio_state = "off"
        self.audio_early = []
        self.warnings.append(f"audio dropped: {reason}")
        if was_waiting and self.output is not None:
            self._release_held_packets()

    # -- result ------------------------------------------------------------------------------------

    def _result(self, video: bytes, cpu_seconds: float) -> TranscodeResult:
        timeline = self._timeline()
        duration_s = float(timeline.duration_ticks * timeline.time_base)
        fps = self.frames / duration_s if duration_s > 0 else float(self.rate)
        vctx = self.vstream.codec_context
        source = SourceInfo(
            codec=vctx.codec.canonical_name,
            pix_fmt=self.first_frame["pix_fmt"],
            width=self.first_frame["width"],
            height=self.first_frame["height"],
            sar=f"{self.sar.numerator}:{self.sar.denominator}",
            rotation=self.rotation,
            fps=fps,
            duration_s=duration_s,
            frames=self.frames,
            bytes=self.size,
            has_audio=self.source_has_audio,
            container=self.container_name,
            sizes=tuple((w, h, n) for (w, h), n in self.size_counts.items()),
            size_changes=self.size_changes,
            bitrate=round(self.size * 8 / duration_s) if duration_s > 0 else None,
        )
        if self.decode_errors:
            self.warnings.append(f"{self.decode_errors} damaged packets skipped")
        if self.size_changes:
            seen = ", ".join(f"{w}x{h}" for w, h in self.size_counts)
            self.warnings.append(
                f"frame size changes {self.size_changes} times ({seen}): fitted into {self.out_w}x{self.out_h}, padded"
            )
        return TranscodeResult(
            video=video,
            source=source,
            width=self.out_w,
            height=self.out_h,
            fps=fps,
            duration_s=duration_s,
            frames=self.frames,
            bytes=len(video),
            cpu_seconds=cpu_seconds,
            keyframe_interval_frames=self.keyint,
            has_audio=self.audio_packets > 0,
            decode_errors=self.decode_errors,
            warnings=tuple(self.warnings),
            bitrate=round(len(video) * 8 / duration_s) if duration_s > 0 and video else None,
            video_maxrate=self.video_maxrate if self.encode else None,
        )


# --------------------------------------------------------------------------------------------------
# Helpers


class _BufferReader:
    """An independent read cursor over a BytesIO that is still being written (for faststart)."""

    def __init__(self, buffer: io.BytesIO) -> None:
        self.buffer = buffer
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        with self.buffer.getbuffer() as view:
            end = len(view) if size is None or size < 0 else min(len(view), self.position + size)
            chunk = bytes(view[self.position : end])
        self.position += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self.position = offset
        elif whence == io.SEEK_CUR:
            self.position += offset
        else:
            self.position = self.buffer.getbuffer().nbytes + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        pass


def _plane_array(plane: VideoPlane) -> np.ndarray:
    """A writable (height, width) view of one plane, skipping the line padding."""
    # PyAV's stub omits the buffer protocol its planes implement.
    buf = np.frombuffer(cast("memoryview", plane), dtype=np.uint8).reshape(-1, plane.line_size)
    return buf[: plane.height, : plane.width]


def _pad_yuv420p(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """`frame` centred on a black (limited-range) yuv420p canvas of width x height."""
    canvas = av.VideoFrame(width, height, "yuv420p")
    x0 = (width - frame.width) // 2 & ~1
    y0 = (height - frame.height) // 2 & ~1
    for i, (src, dst) in enumerate(zip(frame.planes, canvas.planes, strict=True)):
        shift = 0 if i == 0 else 1
        target = _plane_array(dst)
        target[...] = 16 if i == 0 else 128
        picture = _plane_array(src)
        top, left = y0 >> shift, x0 >> shift
        target[top : top + picture.shape[0], left : left + picture.shape[1]] = picture
    canvas.colorspace = frame.colorspace
    canvas.color_primaries = frame.color_primaries
    canvas.color_trc = frame.color_trc
    return canvas


def _rotate_yuv420p(frame: av.VideoFrame, rotation: int) -> av.VideoFrame:
    """Rotate a yuv420p frame clockwise by 90/180/270 degrees (planes transposed with numpy)."""
    if rotation in (90, 270):
        rotated = av.VideoFrame(frame.height, frame.width, "yuv420p")
    else:
        rotated = av.VideoFrame(frame.width, frame.height, "yuv420p")
    k = {90: -1, 180: 2, 270: 1}[rotation]  # np.rot90 turns counter-clockwise for positive k
    for src, dst in zip(frame.planes, rotated.planes, strict=True):
        _plane_array(dst)[...] = np.rot90(_plane_array(src), k)
    rotated.colorspace = frame.colorspace
    rotated.color_primaries = frame.color_primaries
    rotated.color_trc = frame.color_trc
    return rotated
