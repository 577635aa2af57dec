"""The codecs run as many threads as their task reserves CPUs (one by default), read back from the
PyAV codec context each decode and encode opened: a 1-CPU task never lets FFmpeg start one thread
per core on a node whose other cores run other tasks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kinetics_assets.media.decode import decode_clip, decode_frames, sample_clip
from kinetics_assets.media.depth_codec import DepthEncoding, decode_depth, encode_depth
from kinetics_assets.media.sampling import ClipSampling
from tests.harness.av_streams import record_opened_streams
from tests.harness.exotic_clips import exotic_clip_bytes


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    return record_opened_streams(monkeypatch)


@pytest.fixture(scope="module")
def clip() -> bytes:
    return exotic_clip_bytes(container_format="mp4", width=96, height=64, fps=10, frames=12)


@pytest.fixture(scope="module")
def depth() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((12, 64, 96), dtype=np.float32), np.arange(12) / 10


def _threads(streams: list[Any]) -> list[int]:
    return [s.codec_context.thread_count for s in streams]


def test_decoders_run_one_thread_unless_told_otherwise(opened: list[Any], clip: bytes) -> None:
    decode_frames(clip)
    decode_clip(clip, [0, 5])
    sample_clip(clip, ClipSampling(num_frames=4, start="centre"))
    assert _threads(opened) == [1, 1, 1]
    opened.clear()
    decode_frames(clip, threads=2)
    decode_clip(clip, [0, 5], threads=2)
    sample_clip(clip, ClipSampling(num_frames=4, start="centre"), threads=2)
    assert _threads(opened) == [2, 2, 2]


def test_the_depth_codec_runs_one_thread_unless_told_otherwise(opened: list[Any], depth: Any) -> None:
    frames, times = depth
    for codec in ("h264_gray10", "ffv1_gray16"):
        encoded = encode_depth(frames, times, DepthEncoding(codec=codec))
        decode_depth(encoded.data, encoded.lo, encoded.hi)
        decode_depth(encoded.data, encoded.lo, encoded.hi, frame_indices=[3, 7])
        assert _threads(opened) == [1, 1, 1], codec
        opened.clear()
        encode_depth(frames, times, DepthEncoding(codec=codec, threads=2))
        decode_depth(encoded.data, encoded.lo, encoded.hi, threads=2)
        assert _threads(opened) == [2, 2], codec
        opened.clear()


def test_negative_thread_counts_are_refused(clip: bytes) -> None:
    with pytest.raises(ValueError, match="threads must be >= 0"):
        DepthEncoding(threads=-1)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        decode_frames(clip, threads=-1)
