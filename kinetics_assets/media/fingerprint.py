"""A model-free fingerprint of a clip: one 64-bit perceptual hash (DCT pHash) per second, and the
comparison of two clips' hash sequences that finds copies, re-encodes, resizes, small crops, time
shifts and overlapping segments of one source.

Each second's hash is taken from the mean of the frames sampled in it (`frames_per_hash` of them),
so a clip shifted by a fraction of a second still hashes close to the original: the windows overlap.
The hash is the sign of the 8x8 lowest DCT coefficients of a 32x32 grayscale picture against their
median, which survives re-encoding, scaling and small crops and ignores colour. A second with no
picture to compare (near-uniform: black, a fade) hashes to 0, which never matches anything.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "FLAT",
    "Alignment",
    "FingerprintConfig",
    "MatchConfig",
    "align",
    "as_stored",
    "fingerprint_frames",
    "from_stored",
    "hamming",
    "phash",
]

HASH_SIZE = 32
"""The grayscale picture's side before the DCT."""
LOW = 8
"""The DCT's low-frequency block kept: LOW * LOW = 64 bits."""
FLAT = 0
"""The hash of a second with no picture to compare; it matches nothing."""
FLAT_STD = 2.0
"""Luma standard deviation (0-255) of the 32x32 picture under which a second is flat."""
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_BITS = np.uint64(1) << np.arange(LOW * LOW, dtype=np.uint64)


@dataclass(frozen=True)
class FingerprintConfig:
    fps: float = 1.0
    """Hashes per second of video."""
    frames_per_hash: int = 4
    """Frames sampled in each hash's window and averaged before hashing."""

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"FingerprintConfig.fps must be > 0, got {self.fps}")
        if self.frames_per_hash < 1:
            raise ValueError(f"FingerprintConfig.frames_per_hash must be >= 1, got {self.frames_per_hash}")

    @property
    def sample_fps(self) -> float:
        """Frames decoded per second of video."""
        return self.fps * self.frames_per_hash


@dataclass(frozen=True)
class MatchConfig:
    """When two clips are near-duplicates: at their best alignment, `min_share` of the seconds both
    picture hold hashes within `max_bits` of each other, and at least `min_matched` such seconds
    (fewer when the shorter clip has fewer non-flat seconds).
    """

    max_bits: int = 14
    min_share: float = 0.5
    min_matched: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.max_bits < LOW * LOW:
            raise ValueError(f"MatchConfig.max_bits must be in [0, 63], got {self.max_bits}")
        if not 0.0 < self.min_share <= 1.0:
            raise ValueError(f"MatchConfig.min_share must be in (0, 1], got {self.min_share}")
        if self.min_matched < 1:
            raise ValueError(f"MatchConfig.min_matched must be >= 1, got {self.min_matched}")


@functools.cache
def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: `D @ x` is the DCT of the column x (a few lines beat a dependency)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d


def _small_gray(frame: np.ndarray) -> np.ndarray:
    """An RGB frame [H, W, 3] uint8 as luma [32, 32] float32, area-averaged."""
    luma = frame.astype(np.float32) @ _LUMA
    return np.asarray(Image.fromarray(luma, mode="F").resize((HASH_SIZE, HASH_SIZE), Image.Resampling.BOX))


def phash(gray: np.ndarray) -> int:
    """The 64-bit hash of a [32, 32] luma picture; FLAT when it is near-uniform."""
    if float(gray.std()) < FLAT_STD:
        return FLAT
    d = _dct_matrix(HASH_SIZE)
    low = (d @ gray.astype(np.float64) @ d.T)[:LOW, :LOW].ravel()
    bits = low > np.median(low)
    value = int(np.bitwise_or.reduce(_BITS[bits])) if bits.any() else 0
    return value or 1  # a real picture never hashes to FLAT


def fingerprint_frames(frames: np.ndarray, times: np.ndarray, config: FingerprintConfig) -> list[int]:
    """One hash per window of 1/fps seconds from `frames` [N, H, W, 3] uint8 sampled at `times` (s)."""
    if len(frames) == 0:
        raise ValueError("no frames to fingerprint")
    window = np.floor((times - times[0]) * config.fps + 1e-9).astype(np.int64)
    small = np.stack([_small_gray(f) for f in frames])
    hashes = []
    for w in range(int(window.max()) + 1):
        inside = window == w
        # A window with no sampled frame (a gap in the video) stands for no picture.
        hashes.append(phash(small[inside].mean(axis=0)) if inside.any() else FLAT)
    return hashes


def as_stored(hashes: Sequence[int]) -> list[int]:
    """Hashes as the table stores them: the same 64 bits read as signed int64.

    A uint64 column would break every DuckDB query over the table: Substrait, which carries its
    filters to Lance, has no unsigned types.
    """
    return np.asarray(hashes, dtype=np.uint64).view(np.int64).tolist()


def from_stored(values: Sequence[int]) -> np.ndarray:
    """Stored (signed) hashes back as uint64."""
    return np.asarray(values, dtype=np.int64).view(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between every hash of `a` and every hash of `b`: [len(a), len(b)]."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    return np.bitwise_count(a[:, None] ^ b[None, :]).astype(np.int16)


@dataclass(frozen=True, kw_only=True)
class Alignment:
    """Two clips at their best alignment: `b`'s window j lies against `a`'s window j + offset."""

    offset: int
    """Windows of `a` before `b`'s first (negative: `b` starts before `a`)."""
    overlap: int
    """Aligned windows where both have picture."""
    matched: int
    """Of those, windows whose hashes are within the threshold."""
    mean_bits: float
    """Mean differing bits over the matched windows."""

    @property
    def share(self) -> float:
        return self.matched / self.overlap if self.overlap else 0.0

    def is_duplicate(self, config: MatchConfig, *, shorter: int) -> bool:
        """Whether the alignment makes a near-duplicate; `shorter` is the smaller count of non-flat windows."""
        return self.matched >= min(config.min_matched, max(shorter, 1)) and self.share >= config.min_share


def align(a: np.ndarray | Sequence[int], b: np.ndarray | Sequence[int], *, max_bits: int) -> Alignment | None:
    """The offset that matches most windows of `a` and `b` (ties: the higher share, then the smaller
    shift); None when no window matches at any offset.
    """
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    if len(a) == 0 or len(b) == 0:
        return None
    bits = hamming(a, b)
    both = (a != FLAT)[:, None] & (b != FLAT)[None, :]
    close = both & (bits <= max_bits)
    if not close.any():
        return None
    best: tuple[tuple[int, float, int], Alignment] | None = None
    for offset in range(-(len(b) - 1), len(a)):
        # Window j of b against window j + offset of a: the diagonal `offset` of the [a, b] matrix, negated.
        matched = int(np.trace(close, offset=-offset))
        if matched == 0:
            continue
        overlap = int(np.trace(both, offset=-offset))
        diagonal = np.diagonal(bits, offset=-offset)[np.diagonal(close, offset=-offset)]
        found = Alignment(offset=offset, overlap=overlap, matched=matched, mean_bits=float(diagonal.mean()))
        key = (matched, found.share, -abs(offset))
        if best is None or key > best[0]:
            best = (key, found)
    return best[1] if best else None
