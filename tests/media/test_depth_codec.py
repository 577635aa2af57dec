"""Depth video codec: round-trip error, timestamps, frame count, edge cases, selective decoding.

Error bounds are fractions of the video's depth range (hi - lo), the unit the codec quantises in:
  * ffv1_gray16 is lossless on 16-bit codes: error <= half a code (0.5/65535) plus float32 rounding,
    so <= 1/65535 of the range.
  * h264_gray10 at CRF 12: quantising to 10 bits alone costs up to 0.5/1023 = 4.9e-4 (mean ~2.4e-4);
    the transform coding adds more, depending on detail and motion: the test scene below measures
    mean 1.6e-3, p99 5.5e-3, max 1.9e-2 (bench: 5.4e-4 on a calmer scene, 2.7e-3 on noise-like
    random-model output). Bounds: mean <= 3e-3 (3 codes), p99 <= 1.5e-2, max <= 5e-2. Scaling,
    plane-read (an 8-bit or video-range read) or frame-order bugs give errors of 0.1 and more.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from kinetics_assets.media.decode import frame_timestamps
from kinetics_assets.media.depth_codec import (
    DEPTH_CODECS,
    DepthEncoding,
    EncodedDepth,
    decode_depth,
    encode_depth,
)

N_FRAMES, HEIGHT, WIDTH = 40, 90, 160


def smooth_depth(n: int = N_FRAMES, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Smooth, moving, relative-inverse-depth-like values in an arbitrary model scale (2..9)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = [
        2.0 + 4.0 * ys / height + 1.5 * np.sin(xs / 17.0 + i / 6.0) * np.cos(ys / 13.0 - i / 9.0) + 0.05 * i
        for i in range(n)
    ]
    return np.stack(frames).astype(np.float32)


def irregular_timestamps(n: int = N_FRAMES) -> np.ndarray:
    """29.97 fps with a jitter and a late start, as frames cut from a real clip can have."""
    base = 0.4 + np.arange(n) * (1001 / 30000)
    return base + np.where(np.arange(n) % 7 == 3, 0.004, 0.0)


@pytest.fixture(scope="module")
def depth() -> np.ndarray:
    return smooth_depth()


@pytest.fixture(scope="module")
def encoded(depth: np.ndarray) -> dict[str, EncodedDepth]:
    ts = irregular_timestamps()
    return {codec: encode_depth(depth, ts, DepthEncoding(codec=codec)) for codec in DEPTH_CODECS}


def relative_error(decoded: np.ndarray, depth: np.ndarray, enc: EncodedDepth) -> np.ndarray:
    return np.abs(decoded.astype(np.float64) - depth) / (enc.hi - enc.lo)


def test_encoded_metadata(depth, encoded):
    for codec, enc in encoded.items():
        assert enc.encoding == codec
        assert (enc.frames, enc.height, enc.width) == depth.shape
        assert enc.lo == pytest.approx(float(depth.min()))
        assert enc.hi == pytest.approx(float(depth.max()))
        np.testing.assert_array_equal(enc.timestamps, irregular_timestamps())
    # the lossy codecs are what make this worth it: far below raw float16
    assert len(encoded["h264_gray10"].data) < depth.size * 2 / 20


def test_ffv1_is_lossless_at_16_bits(depth, encoded):
    enc = encoded["ffv1_gray16"]
    decoded = decode_depth(enc.data, enc.lo, enc.hi)
    assert decoded.dtype == np.float32
    assert decoded.shape == depth.shape
    assert relative_error(decoded, depth, enc).max() <= 1 / 65535


@pytest.mark.parametrize(
    ("codec", "mean_bound", "p99_bound", "max_bound"),
    [("h264_gray10", 3e-3, 1.5e-2, 5e-2)],
)
def test_lossy_round_trip_error(depth, encoded, codec, mean_bound, p99_bound, max_bound):  # noqa: PLR0917 - pytest passes fixtures and parameters
    enc = encoded[codec]
    decoded = decode_depth(enc.data, enc.lo, enc.hi)
    assert decoded.dtype == np.float32
    assert decoded.shape == depth.shape
    err = relative_error(decoded, depth, enc)
    assert err.mean() <= mean_bound
    assert np.quantile(err, 0.99) <= p99_bound
    assert err.max() <= max_bound
    # decoded frames are in presentation order: each matches its own source frame far better than a neighbour
    assert relative_error(decoded[10], depth[11], enc).mean() > 5 * err[10].mean()


def test_gray10_keeps_all_10_bit_levels():
    """A flat 10-bit level must come back exactly: catches reading the plane at 8 bits or video range."""
    levels = np.array([0, 1, 2, 511, 1021, 1022, 1023], dtype=np.float32)
    depth = np.repeat(levels[:, None, None], 64 * 64, axis=1).reshape(-1, 64, 64)
    enc = encode_depth(depth, np.arange(len(levels)) / 10, DepthEncoding("h264_gray10", crf=12))
    decoded = decode_depth(enc.data, enc.lo, enc.hi)
    np.testing.assert_allclose(decoded[:, 8:56, 8:56], depth[:, 8:56, 8:56], atol=1e-3)


@pytest.mark.parametrize(("codec", "tolerance_s"), [("h264_gray10", 1 / 180_000 + 1e-9), ("ffv1_gray16", 5e-4 + 1e-9)])
def test_timestamps_and_frame_count_preserved(encoded, codec, tolerance_s):
    """mp4 keeps 1/90000 s ticks; Matroska rounds to milliseconds."""
    enc = encoded[codec]
    ts = frame_timestamps(enc.data)
    assert len(ts) == N_FRAMES
    np.testing.assert_allclose(ts, irregular_timestamps(), rtol=0, atol=tolerance_s)
    assert decode_depth(enc.data, enc.lo, enc.hi).shape[0] == N_FRAMES


@pytest.mark.parametrize("codec", DEPTH_CODECS)
def test_selected_frames_match_full_decode(encoded, codec):
    enc = encoded[codec]
    full = decode_depth(enc.data, enc.lo, enc.hi)
    # across keyframes (every ~30 frames), backwards, repeated, negative
    indices = [37, 0, 3, 3, 29, 30, 31, -1, 12]
    picked = decode_depth(enc.data, enc.lo, enc.hi, frame_indices=indices)
    assert picked.shape == (len(indices), HEIGHT, WIDTH)
    np.testing.assert_array_equal(picked, full[indices])
    # a contiguous dataloader-style window, read from a file-like object as Lance blobs are
    window = decode_depth(io.BytesIO(enc.data), enc.lo, enc.hi, frame_indices=range(20, 36))
    np.testing.assert_array_equal(window, full[20:36])


def test_out_of_range_frame_index(encoded):
    enc = encoded["h264_gray10"]
    with pytest.raises(IndexError, match=f"frame index {N_FRAMES} out of range.*{N_FRAMES} frames"):
        decode_depth(enc.data, enc.lo, enc.hi, frame_indices=[0, N_FRAMES])


@pytest.mark.parametrize("codec", DEPTH_CODECS)
def test_zero_range_depth(codec):
    depth = np.full((5, 32, 48), 3.25, dtype=np.float32)
    enc = encode_depth(depth, np.arange(5) / 25, DepthEncoding(codec=codec))
    assert enc.lo == enc.hi == pytest.approx(3.25)
    decoded = decode_depth(enc.data, enc.lo, enc.hi)
    assert np.isfinite(decoded).all()
    np.testing.assert_array_equal(decoded, depth)


def test_non_finite_values_use_finite_range():
    depth = smooth_depth(4, 32, 48)
    depth[1, 0:4, 0:4] = np.nan
    depth[2, 0:4, 0:4] = np.inf
    depth[3, 0:4, 0:4] = -np.inf
    enc = encode_depth(depth, np.arange(4) / 25, DepthEncoding("ffv1_gray16"))
    finite = depth[np.isfinite(depth)]
    assert (enc.lo, enc.hi) == (pytest.approx(float(finite.min())), pytest.approx(float(finite.max())))
    decoded = decode_depth(enc.data, enc.lo, enc.hi)
    assert np.isfinite(decoded).all()
    assert decoded[1, 0, 0] == pytest.approx(enc.lo)
    assert decoded[3, 0, 0] == pytest.approx(enc.lo)
    assert decoded[2, 0, 0] == pytest.approx(enc.hi)
    np.testing.assert_allclose(decoded[0], depth[0], atol=(enc.hi - enc.lo) / 65535)


def test_odd_frame_size_and_single_frame():
    depth = smooth_depth(1, 37, 53)
    enc = encode_depth(depth, [0.0])
    decoded = decode_depth(enc.data, enc.lo, enc.hi)
    assert decoded.shape == (1, 37, 53)
    assert relative_error(decoded, depth, enc).mean() <= 3e-3


def test_rejects_bad_inputs(depth):
    with pytest.raises(ValueError, match="one timestamp per depth frame"):
        encode_depth(depth, np.arange(3) / 25)
    bad_ts = irregular_timestamps().copy()
    bad_ts[5] = bad_ts[4]
    with pytest.raises(ValueError, match="strictly increasing: frame 5"):
        encode_depth(depth, bad_ts)
    with pytest.raises(ValueError, match=r"\[N,H,W\]"):
        encode_depth(depth[0], [0.0])
    with pytest.raises(ValueError, match=r"DepthEncoding\.codec='vp9_gray'"):
        DepthEncoding(codec="vp9_gray")
