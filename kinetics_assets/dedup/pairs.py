"""Near-duplicate pairs: the one pair type (whatever found the pair: the fingerprint here, an
embedding later), and finding fingerprint pairs over many clips without comparing every two.

Blocking: each 64-bit hash is cut into `bands` bands, in `tables` fixed orders of its bits (the
first the bits as they are); two clips are compared only when their seconds agree exactly on at
least `min_shared` (table, band) values (a multi-index hash). Two hashes within `max_bits` of each
other surely share a band only when `max_bits < bands`; above that a close pair of seconds may
share none, but a duplicate has many close seconds, and each more table is another chance. A band
value held by more than `max_bucket` clips (a common picture: a logo, a title card) says nothing
and is left out, so the work grows with the clips and not with their square.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from kinetics_assets.media.fingerprint import FLAT, MatchConfig, align

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Blocking", "ClipHashes", "DuplicatePair", "Reason", "candidate_pairs", "fingerprint_pairs"]

Reason = Literal["fingerprint", "embedding"]


@dataclass(frozen=True, kw_only=True)
class DuplicatePair:
    """Two videos that are near-duplicates (`video_a` < `video_b`), why, and how alike (0-1)."""

    video_a: str
    video_b: str
    reason: Reason
    score: float
    """fingerprint: the share of the overlapping seconds whose hashes match; embedding: the cosine."""
    offset_s: float | None = None
    """`video_b` starts this many seconds into `video_a` (negative: before it); fingerprint only."""
    overlap_s: float | None = None
    matched_s: float | None = None
    mean_bits: float | None = None
    """Mean differing bits of the matched seconds' hashes."""

    def __post_init__(self) -> None:
        if not self.video_a < self.video_b:
            raise ValueError(f"a pair is ordered by video_id: {self.video_a!r} must sort before {self.video_b!r}")


@dataclass(frozen=True, kw_only=True)
class ClipHashes:
    """One clip's fingerprint, as stored in the table."""

    video_id: str
    hashes: Sequence[int]
    fps: float


@dataclass(frozen=True)
class Blocking:
    bands: int = 4
    """Bands each hash is cut into (64 / bands bits each)."""
    tables: int = 8
    """Orders of the hash's bits the bands are cut from (more: fewer close pairs missed, more work;
    BENCHMARKS.md: 8 finds 115 of the 119 pairs real copies make, 4 finds 113 in a fifth of the time)."""
    min_shared: int = 2
    """(table, band) values two clips must share to be aligned (two: a lone chance collision is not)."""
    max_bucket: int = 64
    """Clips one band value may hold and still propose pairs."""

    def __post_init__(self) -> None:
        if self.bands not in (1, 2, 4, 8, 16):
            raise ValueError(
                f"Blocking.bands must divide 64 into whole bytes or nibbles (1, 2, 4, 8, 16), got {self.bands}"
            )
        if self.tables < 1 or self.min_shared < 1:
            raise ValueError(f"Blocking.tables and min_shared must be >= 1, got {self.tables}, {self.min_shared}")
        if self.max_bucket < 2:  # noqa: PLR2004 - a bucket of one proposes no pair
            raise ValueError(f"Blocking.max_bucket must be >= 2, got {self.max_bucket}")


@dataclass(frozen=True, kw_only=True)
class Candidates:
    pairs: list[tuple[int, int]]
    """Clip positions (i < j) that share a band value."""
    skipped_buckets: int
    """Band values held by more than `max_bucket` clips."""


@functools.cache
def _orders(tables: int) -> np.ndarray:
    """[tables, 64] bit orders: the identity, then fixed shuffles (the same in every process)."""
    rng = np.random.default_rng(64)
    return np.stack([np.arange(64), *(rng.permutation(64) for _ in range(tables - 1))])


def _reordered(hashes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each hash with its bits moved: bit order[k] of the input becomes bit k."""
    bits = (hashes[:, None] >> order[None, :].astype(np.uint64)) & np.uint64(1)
    return (bits << np.arange(64, dtype=np.uint64)[None, :]).sum(axis=1, dtype=np.uint64)


def candidate_pairs(clips: Sequence[ClipHashes], blocking: Blocking) -> Candidates:
    """The pairs of clips (of the same fps) worth aligning."""
    width = 64 // blocking.bands
    mask = np.uint64((1 << width) - 1)
    orders = _orders(blocking.tables)
    keys_per_fps = blocking.tables * blocking.bands
    owners, keys = [], []
    fps_code = {fps: i for i, fps in enumerate(sorted({c.fps for c in clips}))}
    for position, clip in enumerate(clips):
        hashes = np.asarray([h for h in clip.hashes if h != FLAT], dtype=np.uint64)
        for table, order in enumerate(orders):
            moved = hashes if table == 0 else _reordered(hashes, order)
            for band in range(blocking.bands):
                values = np.unique((moved >> np.uint64(band * width)) & mask).astype(np.int64)
                # One key per (fps, table, band, value): clips of other fps never meet.
                slot = fps_code[clip.fps] * keys_per_fps + table * blocking.bands + band
                keys.append(slot * (1 << width) + values)
                owners.append(np.full(len(values), position, dtype=np.int64))
    if not keys:
        return Candidates(pairs=[], skipped_buckets=0)
    key, owner = np.concatenate(keys), np.concatenate(owners)
    order = np.lexsort((owner, key))
    key, owner = key[order], owner[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    shared: Counter[tuple[int, int]] = Counter()
    skipped = 0
    for start, end in zip(starts, ends, strict=True):
        members = np.unique(owner[start:end])
        if len(members) < 2:  # noqa: PLR2004 - a pair needs two
            continue
        if len(members) > blocking.max_bucket:
            skipped += 1
            continue
        ids = members.tolist()
        shared.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
    found = sorted(p for p, n in shared.items() if n >= blocking.min_shared)
    return Candidates(pairs=found, skipped_buckets=skipped)


def fingerprint_pairs(
    clips: Sequence[ClipHashes], *, match: MatchConfig, blocking: Blocking = Blocking()
) -> tuple[list[DuplicatePair], Counter[str]]:
    """The near-duplicate pairs among `clips`, and counts of the work done (candidates, skipped buckets)."""
    ordered = sorted(clips, key=lambda c: c.video_id)
    candidates = candidate_pairs(ordered, blocking)
    pairs = []
    for i, j in candidates.pairs:
        a, b = ordered[i], ordered[j]
        found = align(a.hashes, b.hashes, max_bits=match.max_bits)
        shorter = min(sum(h != FLAT for h in a.hashes), sum(h != FLAT for h in b.hashes))
        if found is None or not found.is_duplicate(match, shorter=shorter):
            continue
        pairs.append(
            DuplicatePair(
                video_a=a.video_id,
                video_b=b.video_id,
                reason="fingerprint",
                score=round(found.share, 4),
                offset_s=found.offset / a.fps,
                overlap_s=found.overlap / a.fps,
                matched_s=found.matched / a.fps,
                mean_bits=round(found.mean_bits, 2),
            )
        )
    work = Counter(clips=len(clips), candidates=len(candidates.pairs), skipped_buckets=candidates.skipped_buckets)
    return pairs, work
