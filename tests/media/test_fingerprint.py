"""The perceptual fingerprint on generated near-duplicates: re-encodes, resizes, crops, time shifts
and segments of one pan align with it as duplicates; other pans and flat clips do not."""

from __future__ import annotations

import numpy as np
import pytest

from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.fingerprint import (
    FLAT,
    FingerprintConfig,
    MatchConfig,
    align,
    fingerprint_frames,
    hamming,
    phash,
)
from kinetics_assets.media.sampling import FrameSampling
from tests.harness.scenes import flat_clip, scene_clip

CONFIG = FingerprintConfig()
MATCH = MatchConfig()


def _fingerprint(data: bytes, config: FingerprintConfig = CONFIG) -> np.ndarray:
    indices = FrameSampling(policy="fps", fps=config.sample_fps).indices(frame_timestamps(data))
    frames, times = decode_frames(data, indices)
    return np.asarray(fingerprint_frames(frames, times, config), dtype=np.uint64)


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    return _fingerprint(scene_clip(1, seconds=6.0))


VARIANTS = {
    "re-encoded": {"crf": 40},
    "scaled": {"size": (160, 120)},
    "cropped 10%": {"crop": 0.1},
    "shifted 0.5 s": {"start_s": 0.5, "seconds": 5.5},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_copy_of_the_source_aligns_with_it_at_no_offset(source, variant):
    copy = _fingerprint(scene_clip(1, **({"seconds": 6.0} | VARIANTS[variant])))
    found = align(source, copy, max_bits=MATCH.max_bits)
    assert found is not None
    assert found.is_duplicate(MATCH, shorter=min(len(source), len(copy))), found
    assert found.offset in (0, 1) if variant.startswith("shifted") else found.offset == 0


def test_a_segment_is_found_where_it_was_cut_from(source):
    segment = _fingerprint(scene_clip(1, start_s=2.0, seconds=3.0))
    found = align(source, segment, max_bits=MATCH.max_bits)
    assert found is not None
    assert (found.offset, found.overlap) == (2, len(segment))
    assert found.is_duplicate(MATCH, shorter=len(segment))
    # Either way round: the source starts two windows before the segment.
    assert align(segment, source, max_bits=MATCH.max_bits).offset == -2


def test_other_pans_are_not_duplicates(source):
    for seed in (2, 3, 4):
        other = _fingerprint(scene_clip(seed, seconds=6.0))
        found = align(source, other, max_bits=MATCH.max_bits)
        assert found is None or not found.is_duplicate(MATCH, shorter=len(other)), (seed, found)
        assert np.median(hamming(source, other)) > 20


def test_a_flat_clip_hashes_flat_and_matches_nothing(source):
    flat = _fingerprint(flat_clip(grey=0))
    assert set(flat.tolist()) == {FLAT}
    assert align(flat, _fingerprint(flat_clip(grey=200)), max_bits=MATCH.max_bits) is None
    assert align(source, flat, max_bits=63 - 1) is None


def test_one_hash_per_window_and_never_flat_for_a_picture():
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, (32, 32)).astype(np.float32)
    assert phash(picture) != FLAT
    assert phash(np.full((32, 32), 7.0)) == FLAT
    frames = rng.integers(0, 255, (9, 24, 32, 3), dtype=np.uint8)
    times = np.arange(9) / 4.0  # 2.25 s at 4 fps: three one-second windows
    assert len(fingerprint_frames(frames, times, FingerprintConfig(fps=1.0))) == 3
    assert len(fingerprint_frames(frames, times, FingerprintConfig(fps=2.0, frames_per_hash=2))) == 5


def test_bad_settings_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"FingerprintConfig.fps must be > 0, got 0"):
        FingerprintConfig(fps=0)
    with pytest.raises(ValueError, match=r"MatchConfig.max_bits must be in \[0, 63\], got 64"):
        MatchConfig(max_bits=64)
    with pytest.raises(ValueError, match=r"MatchConfig.min_share must be in \(0, 1\], got 0"):
        MatchConfig(min_share=0)
