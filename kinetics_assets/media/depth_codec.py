"""Store one clip's depth maps as one grayscale video, and read them back (all frames or chosen ones).

Why a video: raw float16 depth for a 10 s 360p clip is ~115 MB; 10-bit gray H.264 at a low CRF is
~0.5 MB with errors far below what a relative-depth model can resolve, decodes at hundreds of fps and
seeks like the RGB video it sits next to. Values are scaled per video: lo/hi (min/max of the finite
values) map to 0 and the codec's full code range, so the caller must keep lo/hi (they are returned in
`EncodedDepth`) to get the model's units back. Frame timestamps become the stream's pts, so depth
frame i lines up with the RGB frame it was computed from.

Encodings:
  * "h264_gray10" (default): libx264, 4:0:0 10-bit, CRF 12, mp4 with faststart. Lossy.
  * "ffv1_gray16": FFV1 16-bit gray in Matroska. Lossless at 16 bits (error <= 1/131070 of the range);
    ~100x larger. Matroska stores timestamps in milliseconds.
Not offered: libx265 gray12 (~40% smaller than h264_gray10 at CRF 12, 2x slower to encode) corrupted
the heap (glibc abort) on small frames (e.g. 48 px wide) with PyAV 18.1 / FFmpeg 8; libsvtav1 has no
gray formats. See BENCHMARKS.md, "Depth video codec".

PyAV only (no torch): this runs in CPU workers and dataloaders.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import av
import numpy as np

from kinetics_assets.media.decode import VideoSource, decode_selected, index_frames, open_video, video_stream

if TYPE_CHECKING:
    from collections.abc import Sequence

# mp4 keeps timestamps in this time base exactly (within half a tick, 5.6 us).
_TIME_BASE = Fraction(1, 90_000)
# x264's CRF scale (8-bit and 10-bit alike).
_MAX_CRF = 51
_DEPTH_DIMS = 3  # [N,H,W]


@dataclass(frozen=True)
class _CodecSpec:
    encoder: Literal["libx264", "ffv1"]
    pix_fmt: str
    bits: int
    container: str
    lossless: bool


_CODECS: dict[str, _CodecSpec] = {
    "h264_gray10": _CodecSpec("libx264", "gray10le", 10, "mp4", lossless=False),
    "ffv1_gray16": _CodecSpec("ffv1", "gray16le", 16, "matroska", lossless=True),
}

DEPTH_CODECS = tuple(_CODECS)
DepthCodec = Literal["h264_gray10", "ffv1_gray16"]
"""The names of DEPTH_CODECS, as a type (a run config offers exactly these)."""


@dataclass(frozen=True)
class DepthEncoding:
    """How a depth video is encoded. `crf` is ignored by the lossless codecs.

    A keyframe every ~1 s keeps random access cheap (a dataloader decodes at most ~1 s to reach any
    frame) at a small size cost. `threads`: the encoder's threads, 1 by default because an encode
    runs in a task that reserves one CPU; set it to the CPUs the encoding task reserves (0 lets the
    codec choose, one thread or more per core, whatever else runs on the node).
    """

    codec: DepthCodec = "h264_gray10"
    crf: int = 12
    keyframe_interval_s: float = 1.0
    preset: str = "medium"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.codec not in _CODECS:
            raise ValueError(f"DepthEncoding.codec={self.codec!r} is not one of {list(_CODECS)}")
        if not self.keyframe_interval_s > 0:
            raise ValueError(f"DepthEncoding.keyframe_interval_s must be > 0, got {self.keyframe_interval_s}")
        if not 0 <= self.crf <= _MAX_CRF:
            raise ValueError(f"DepthEncoding.crf must be within 0..{_MAX_CRF}, got {self.crf}")
        if self.threads < 0:
            raise ValueError(f"DepthEncoding.threads must be >= 0 (0 = auto), got {self.threads}")


@dataclass
class EncodedDepth:
    """One encoded depth video plus what is needed to read it back: lo/hi undo the normalisation."""

    data: bytes
    lo: float
    hi: float
    frames: int
    timestamps: np.ndarray = field(repr=False)  # float64 seconds, one per frame
    width: int
    height: int
    encoding: str


def depth_range(depth: np.ndarray) -> tuple[float, float]:
    """(min, max) over the finite values; (0.0, 0.0) when there are none."""
    finite = depth[np.isfinite(depth)]
    if finite.size == 0:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())


def quantize_depth(depth: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    """Float depth -> uint16 codes in [0, 2**bits - 1]; lo -> 0, hi -> max code.

    Non-finite values: NaN and -inf become 0 (lo), +inf the max code (hi). A zero range maps
    everything to 0, decoded back as lo.
    """
    qmax = (1 << bits) - 1
    span = hi - lo
    gain = np.float32(qmax / span) if span > 0 else np.float32(0.0)
    scaled = (np.asarray(depth, dtype=np.float32) - np.float32(lo)) * gain
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=float(qmax), neginf=0.0)
    return np.rint(np.clip(scaled, 0, qmax)).astype(np.uint16)


def dequantize_depth(codes: np.ndarray, lo: float, hi: float, bits: int) -> np.ndarray:
    qmax = (1 << bits) - 1
    return codes.astype(np.float32) * np.float32((hi - lo) / qmax) + np.float32(lo)


def _frame_rate(timestamps: np.ndarray) -> Fraction:
    """Average rate from the timestamps; it only steers the keyframe interval and rate control."""
    if len(timestamps) > 1 and timestamps[-1] > timestamps[0]:
        fps = (len(timestamps) - 1) / (timestamps[-1] - timestamps[0])
    else:
        fps = 30.0
    return Fraction(max(1, round(fps * 1000)), 1000)


def _check_inputs(depth: np.ndarray, timestamps: np.ndarray) -> None:
    if depth.ndim != _DEPTH_DIMS:
        raise ValueError(f"depth must be [N,H,W], got shape {depth.shape}")
    n, height, width = depth.shape
    if n == 0 or height == 0 or width == 0:
        raise ValueError(f"depth must hold at least one non-empty frame, got shape {depth.shape}")
    if timestamps.shape != (n,):
        raise ValueError(f"need one timestamp per depth frame: {n} frames, timestamps shape {timestamps.shape}")
    if not np.all(np.isfinite(timestamps)):
        raise ValueError(
            f"timestamps must be finite, bad at frames {np.flatnonzero(~np.isfinite(timestamps))[:5].tolist()}"
        )
    if timestamps[0] < 0:
        raise ValueError(f"timestamps must be >= 0 s, frame 0 is at {timestamps[0]} s")
    ticks = np.rint(timestamps / float(_TIME_BASE)).astype(np.int64)
    bad = np.flatnonzero(np.diff(ticks) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(
            f"timestamps must be strictly increasing: frame {i} at {timestamps[i]} s follows {timestamps[i - 1]} s"
        )


def encode_depth(
    depth: np.ndarray,
    timestamps: Sequence[float] | np.ndarray,
    encoding: DepthEncoding | None = None,
) -> EncodedDepth:
    """Encode float depth [N,H,W] (one clip) into one grayscale video; timestamps in seconds."""
    encoding = encoding or DepthEncoding()
    spec = _CODECS[encoding.codec]
    depth = np.asarray(depth)
    ts = np.asarray(timestamps, dtype=np.float64)
    _check_inputs(depth, ts)
    n, height, width = depth.shape
    lo, hi = depth_range(depth)
    rate = _frame_rate(ts)
    gop = max(1, round(encoding.keyframe_interval_s * float(rate)))

    options: dict[str, str] = {"g": str(gop)}
    if spec.encoder == "libx264":
        options.update(crf=str(encoding.crf), preset=encoding.preset)
    elif spec.encoder == "ffv1":
        # Level 3 with slice CRCs: multithreaded, and a damaged blob is detected instead of decoded.
        options.update(level="3", slicecrc="1", context="1")
    container_options = {"movflags": "+faststart"} if spec.container == "mp4" else {}

    # faststart rewrites the file after the fact, which needs a real file: encode to a temp file.
    with tempfile.TemporaryDirectory(prefix="depth_codec_") as tmp:
        path = Path(tmp) / f"depth.{'mp4' if spec.container == 'mp4' else 'mkv'}"
        with av.open(str(path), mode="w", format=spec.container, options=container_options) as out:
            stream = out.add_stream(spec.encoder, rate=rate, options=options)
            stream.width = width
            stream.height = height
            stream.pix_fmt = spec.pix_fmt
            stream.time_base = _TIME_BASE
            stream.codec_context.time_base = _TIME_BASE
            stream.codec_context.color_range = 2  # full range: codes span 0..2**bits-1, not video levels
            stream.codec_context.thread_count = encoding.threads
            stream.metadata["depth_lo"] = repr(lo)
            stream.metadata["depth_hi"] = repr(hi)
            for i in range(n):
                codes = quantize_depth(depth[i], lo, hi, spec.bits)
                frame = av.VideoFrame.from_ndarray(codes, format=spec.pix_fmt)
                frame.pts = round(ts[i] / float(_TIME_BASE))
                frame.time_base = _TIME_BASE
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        data = path.read_bytes()
    return EncodedDepth(
        data=data, lo=lo, hi=hi, frames=n, timestamps=ts.copy(), width=width, height=height, encoding=encoding.codec
    )


def _frame_codes(frame: av.VideoFrame) -> tuple[np.ndarray, int]:
    """The luma plane at full precision, and its bit depth.

    A gray H.264 stream decodes as yuv420p10le/... with flat chroma; `to_ndarray(format="gray")`
    would convert (and rescale) it, so read plane 0 directly, honouring the row stride.
    """
    bits = frame.format.components[0].bits
    plane = frame.planes[0]
    dtype = np.dtype(np.uint8) if bits <= np.iinfo(np.uint8).bits else np.dtype("<u2")
    rows = np.frombuffer(memoryview(plane), dtype=dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
    return rows[:, : plane.width], bits


def decode_depth(
    data: VideoSource,
    lo: float,
    hi: float,
    *,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Decode to float32 [N,H,W] in the model's units (lo/hi from `EncodedDepth`).

    `frame_indices` (presentation order, negative allowed, any order, repeats allowed) decodes only
    those frames: it seeks to the keyframe before each wanted stretch and decodes forward, so reading
    16 frames costs at most one keyframe interval of decoding per stretch, not the whole video. The
    frames' timestamps are those of any video: `decode.frame_timestamps`. `threads`: the decoder's
    threads (`decode.video_stream`).
    """
    with open_video(data) as container:
        stream = video_stream(container, threads=threads)
        if frame_indices is None:
            stream.thread_type = "AUTO"
            planes = []
            bits = 8
            for frame in container.decode(stream):
                codes, bits = _frame_codes(frame)
                planes.append(codes.copy())
            if not planes:
                raise ValueError("depth video holds no decodable frames")
            return dequantize_depth(np.stack(planes), lo, hi, bits)
        return _decode_selected(container, stream, np.asarray(frame_indices, dtype=np.int64).reshape(-1), lo, hi)


def _decode_selected(
    container: av.container.InputContainer, stream: av.VideoStream, indices: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    index = index_frames(container, stream)
    # Negative indices count from the end; one below -n stays negative and is reported as given.
    indices = np.where((indices < 0) & (indices >= -len(index)), indices + len(index), indices)
    height, width = stream.codec_context.height, stream.codec_context.width
    if len(indices) == 0:
        return np.empty((0, height, width), dtype=np.float32)
    bits = 8

    def codes_of(frame: av.VideoFrame) -> np.ndarray:
        nonlocal bits
        codes, bits = _frame_codes(frame)
        return codes.copy()

    try:
        planes = decode_selected(container, stream, index, indices, convert=codes_of)
    except ValueError as exc:
        raise ValueError(f"depth video: {exc}") from None
    return dequantize_depth(np.stack(planes), lo, hi, bits)
