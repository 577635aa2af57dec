"""Pairs and groups from hash sequences: the blocking finds what comparing every two clips finds,
with far fewer comparisons; groups join chains and keep one video by a fixed rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kinetics_assets.dedup import (
    Blocking,
    ClipHashes,
    ClipInfo,
    DuplicatePair,
    candidate_pairs,
    fingerprint_pairs,
    group_pairs,
)
from kinetics_assets.media.fingerprint import MatchConfig, align

MATCH = MatchConfig(max_bits=10)


def _noisy(rng: np.random.Generator, hashes: np.ndarray, bits: int) -> np.ndarray:
    """`hashes` with `bits` random bits of each flipped."""
    flips = [np.uint64(sum(1 << int(b) for b in rng.choice(64, bits, replace=False))) for _ in hashes]
    return hashes ^ np.asarray(flips, dtype=np.uint64)


def _library(seed: int = 0, sources: int = 120) -> tuple[list[ClipHashes], set[tuple[str, str]]]:
    """`sources` random clips of 8-20 s, a third of them with a noisy copy (4 bits a second, as a
    re-encode flips)
    and a third with a segment cut from them; the planted pairs by video_id.
    """
    rng = np.random.default_rng(seed)
    clips, planted = [], set()
    for s in range(sources):
        hashes = rng.integers(1, 2**63, rng.integers(8, 21), dtype=np.uint64)
        clips.append(ClipHashes(video_id=f"src{s:04d}", hashes=hashes.tolist(), fps=1.0))
        if s % 3 == 0:
            clips.append(ClipHashes(video_id=f"cpy{s:04d}", hashes=_noisy(rng, hashes, 4).tolist(), fps=1.0))
            planted.add((f"cpy{s:04d}", f"src{s:04d}"))
        if s % 3 == 1:
            clips.append(ClipHashes(video_id=f"seg{s:04d}", hashes=hashes[2:7].tolist(), fps=1.0))
            planted.add((f"seg{s:04d}", f"src{s:04d}"))
    return clips, planted


def test_blocking_finds_every_pair_exhaustive_comparison_finds_with_few_candidates():
    clips, planted = _library()
    pairs, work = fingerprint_pairs(clips, match=MATCH)
    found = {(p.video_a, p.video_b) for p in pairs}
    exhaustive = {
        tuple(sorted((a.video_id, b.video_id)))
        for a, b in itertools.combinations(clips, 2)
        if (f := align(a.hashes, b.hashes, max_bits=MATCH.max_bits))
        and f.is_duplicate(MATCH, shorter=min(len(a.hashes), len(b.hashes)))
    }
    assert found == exhaustive == planted
    assert work["clips"] == len(clips)
    assert work["candidates"] < len(clips) * (len(clips) - 1) / 2 / 50
    segment = next(p for p in pairs if p.video_a.startswith("seg"))
    # The source (video_b) starts 2 s before the segment (video_a) it was cut from.
    assert (segment.offset_s, segment.overlap_s, segment.matched_s, segment.score) == (-2.0, 5.0, 5.0, 1.0)


def test_a_band_value_too_many_clips_share_proposes_nothing():
    common = 0x1234
    clips = [
        ClipHashes(video_id=f"v{i}", hashes=[(0x0001_0001_0001 * (i + 1)) << 16 | common], fps=1.0) for i in range(5)
    ]
    one = {"tables": 1, "min_shared": 1}
    assert candidate_pairs(clips, Blocking(max_bucket=4, **one)).pairs == []
    assert candidate_pairs(clips, Blocking(max_bucket=4, **one)).skipped_buckets == 1
    assert len(candidate_pairs(clips, Blocking(max_bucket=5, **one)).pairs) == 10
    # One shared band value is a chance meeting when two are asked for.
    assert candidate_pairs(clips, Blocking(max_bucket=5, tables=1, min_shared=2)).pairs == []


def test_clips_of_other_fps_are_never_compared():
    clips = [ClipHashes(video_id="a", hashes=[7, 9], fps=1.0), ClipHashes(video_id="b", hashes=[7, 9], fps=2.0)]
    assert candidate_pairs(clips, Blocking()).pairs == []


def _pair(a: str, b: str, score: float = 1.0) -> DuplicatePair:
    return DuplicatePair(video_a=a, video_b=b, reason="fingerprint", score=score)


def test_groups_join_chains_and_keep_the_longest_then_largest_then_smallest_id():
    info = {
        "a": ClipInfo(video_id="a", duration_s=5.0, width=320, height=240),
        "b": ClipInfo(video_id="b", duration_s=10.0, width=160, height=120),
        "c": ClipInfo(video_id="c", duration_s=10.0, width=320, height=240),
        "x": ClipInfo(video_id="x", duration_s=3.0, width=64, height=48),
        "y": ClipInfo(video_id="y", duration_s=3.0, width=64, height=48),
    }
    groups = group_pairs([_pair("x", "y"), _pair("a", "b", 0.8), _pair("b", "c")], info)
    assert [(g.keeper, g.members, g.duplicates) for g in groups] == [
        ("c", ("c", "a", "b"), ("a", "b")),
        ("x", ("x", "y"), ("y",)),
    ]
    assert [p.score for p in groups[0].pairs] == [1.0, 0.8]
    # The same pairs in another order choose the same keepers.
    assert group_pairs([_pair("b", "c"), _pair("a", "b", 0.8), _pair("x", "y")], info) == groups


def test_a_pair_is_ordered_by_video_id():
    with pytest.raises(ValueError, match="must sort before"):
        _pair("b", "a")
    with pytest.raises(ValueError, match=r"Blocking\.bands must divide 64"):
        Blocking(bands=3)
