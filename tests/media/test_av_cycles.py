"""Which media paths leave PyAV reference cycles, and that the one that does collects them.

`transcode()` leaves cycles (its containers, filter graph and resampler refer to each other) and ends
with a generation-1 collection; the decode and encode paths leave none, so they need none. Both are
measured the same way: automatic collection off, the call, then a generation-1 collection, which must
find nothing. A change that makes a decode path leave cycles fails here, and DESIGN.md's memory rule
then asks for the collection there too."""

from __future__ import annotations

import gc
import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from kinetics_assets.media.audio import decode_audio
from kinetics_assets.media.decode import decode_clip, decode_frames, frame_timestamps, sample_clip
from kinetics_assets.media.depth_codec import DepthEncoding, decode_depth, encode_depth
from kinetics_assets.media.sampling import ClipSampling
from kinetics_assets.media.transcode import TranscodeConfig, transcode
from tests.harness.exotic_clips import exotic_clip_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CLIP = exotic_clip_bytes(
    container_format="mp4", width=96, height=64, fps=10, frames=12, audio_codec="aac", audio_rate=16000
)
DEPTH = encode_depth(np.random.default_rng(0).random((12, 64, 96), dtype=np.float32), np.arange(12) / 10)


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _left_behind(call: Callable[[], Any]) -> tuple[int, int]:
    """(generation-1 collections during the call, objects a generation-1 collection finds after it)."""
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 1:
            collections.append(1)

    gc.callbacks.append(count)
    try:
        call()
    except (ValueError, IndexError, OSError):
        pass  # the error paths are measured too
    finally:
        gc.callbacks.remove(count)
    return len(collections), gc.collect(1)


DECODES: dict[str, Callable[[], Any]] = {
    "frame_timestamps": lambda: frame_timestamps(CLIP),
    "decode_frames": lambda: decode_frames(CLIP),
    "decode_frames file object": lambda: decode_frames(io.BytesIO(CLIP)),
    "decode_clip": lambda: decode_clip(CLIP, [1, 7, 3]),
    "sample_clip": lambda: sample_clip(CLIP, ClipSampling(num_frames=4, start="centre")),
    "decode_audio": lambda: decode_audio(io.BytesIO(CLIP), max_duration_s=0.5),
    "encode_depth": lambda: encode_depth(np.ones((3, 16, 16), np.float32), np.arange(3) / 10, DepthEncoding()),
    "decode_depth": lambda: decode_depth(DEPTH.data, DEPTH.lo, DEPTH.hi),
    "decode_depth selected": lambda: decode_depth(DEPTH.data, DEPTH.lo, DEPTH.hi, frame_indices=[2, 9]),
    "decode_clip out of range": lambda: decode_clip(CLIP, [99]),
    "sample_clip truncated": lambda: sample_clip(CLIP, ClipSampling(num_frames=4, start="centre"), expected_frames=30),
    "decode_frames garbage": lambda: decode_frames(b"\x00 not a video " * 100),
}


@pytest.mark.parametrize("name", sorted(DECODES))
def test_decode_and_encode_paths_leave_no_cycles(no_automatic_gc: None, name: str) -> None:
    _left_behind(DECODES[name])  # the first call may build caches that live on
    assert _left_behind(DECODES[name])[1] == 0


def test_transcode_makes_cycles_and_ends_by_collecting_them(
    no_automatic_gc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TranscodeConfig(preset="ultrafast")
    transcode(CLIP, config)
    collections, left = _left_behind(lambda: transcode(CLIP, config))
    assert (collections, left) == (1, 0)
    # Without its collection the same transcode leaves cycles behind: the collection is needed.
    monkeypatch.setattr("kinetics_assets.media.transcode.engine.release_av_cycles", lambda: None)
    assert _left_behind(lambda: transcode(CLIP, config))[1] > 0
