"""The settings of the table's vector index and of a query against it, each validated where it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

EMBEDDING_COLUMN = "embedding"
"""The clip embedding: fixed_size_list<float16>[D], L2-normalised, one per ok video (null otherwise)."""
EMBEDDING_STATUS_COLUMN = "embedding_status"
INDEX_NAME = "embedding_idx"
METRIC = "cosine"

IndexType = Literal["IVF_PQ", "IVF_HNSW_SQ"]
INDEX_TYPES: tuple[IndexType, ...] = ("IVF_PQ", "IVF_HNSW_SQ")

MIN_TRAINING_ROWS = 256
"""The fewest vectors an IVF partition or a PQ codebook (8 bits: 256 codes) can be trained on."""


@dataclass(frozen=True)
class IndexConfig:
    """How the ANN index on `embedding` is built. Below `min_rows` there is no index: every search is
    exact (a flat scan of a few thousand vectors takes milliseconds), and recall is 1.
    """

    index_type: IndexType = "IVF_HNSW_SQ"
    """IVF_HNSW_SQ (8-bit scalar-quantised HNSW graphs per partition) reached the recall and latency
    targets with no re-ranking (BENCHMARKS.md); IVF_PQ is smaller on disk and needs `refine_factor`."""
    min_rows: int = 10_000
    """Embedded rows before the index is first built."""
    rows_per_partition: int = 1_000
    """The IVF partition count is rows / this (at least 1), fixed when the index is built."""
    num_sub_vectors: int | None = None
    """IVF_PQ only: sub-vectors per vector; default width / 16 (must divide the width)."""
    rebuild_growth: float = 4.0
    """Rebuild (retrain) the index once the rows per partition have grown this many times over the
    build's; until then new shards are only assigned to the trained partitions (`optimize_indices`)."""
    max_deltas: int = 8
    """Rebuild once the index has this many segments: each update adds one (a delta over the new
    fragments, assigned to the trained centroids), and every query searches every segment."""

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"IndexConfig.index_type must be one of {', '.join(INDEX_TYPES)}, got {self.index_type!r}")
        if self.min_rows < MIN_TRAINING_ROWS:
            raise ValueError(f"IndexConfig.min_rows must be >= {MIN_TRAINING_ROWS}, got {self.min_rows}")
        if self.rows_per_partition < MIN_TRAINING_ROWS:
            raise ValueError(
                f"IndexConfig.rows_per_partition must be >= {MIN_TRAINING_ROWS}, got {self.rows_per_partition}"
            )
        if self.num_sub_vectors is not None and self.num_sub_vectors < 1:
            raise ValueError(f"IndexConfig.num_sub_vectors must be >= 1, got {self.num_sub_vectors}")
        if not self.rebuild_growth > 1:
            raise ValueError(f"IndexConfig.rebuild_growth must be > 1, got {self.rebuild_growth}")
        if self.max_deltas < 1:
            raise ValueError(f"IndexConfig.max_deltas must be >= 1, got {self.max_deltas}")

    def partitions_for(self, rows: int) -> int:
        return max(1, rows // self.rows_per_partition)

    def sub_vectors_for(self, width: int) -> int:
        sub = self.num_sub_vectors or max(1, width // 16)
        if width % sub:
            raise ValueError(
                f"IndexConfig.num_sub_vectors ({sub}) must divide the embedding width ({width}) for IVF_PQ"
            )
        return sub

    def needs_rebuild(self, *, rows: int, partitions: int, segments: int) -> bool:
        """Whether the trained partitions hold too many rows each for the rows now in the table, or the
        index has as many segments as it may have (the next update would add one more).
        """
        grown = rows / max(1, partitions) >= self.rebuild_growth * self.rows_per_partition
        return rows >= self.min_rows and (grown or segments >= self.max_deltas)


@dataclass(frozen=True)
class SearchTuning:
    """Query-time knobs of the ANN search (ignored by an exact search)."""

    nprobes: int = 5
    """IVF partitions searched per query. 5 of 90 gave the recall of 20 at about half the index's CPU
    on clustered vectors (BENCHMARKS.md, "Embedding index"); the recall check tells when a table needs
    more."""
    ef: int = 100
    """HNSW candidate list per partition (IVF_HNSW_SQ); at least k."""
    refine_factor: int | None = None
    """Re-rank k * this candidates by their stored vectors: 2 took IVF_HNSW_SQ's recall@10 from 0.96
    to 0.99 for ~25% more CPU per query."""
    exact: bool = False
    """Search every row exactly, bypassing the index: the ground truth recall is measured against."""

    def __post_init__(self) -> None:
        if self.nprobes < 1:
            raise ValueError(f"SearchTuning.nprobes must be >= 1, got {self.nprobes}")
        if self.ef < 1:
            raise ValueError(f"SearchTuning.ef must be >= 1, got {self.ef}")
        if self.refine_factor is not None and self.refine_factor < 1:
            raise ValueError(f"SearchTuning.refine_factor must be >= 1 or None, got {self.refine_factor}")

    def nearest(self, query: object, k: int, *, exact: bool = False) -> dict[str, object]:
        """The `nearest` argument of a Lance scan for `k` neighbours of `query` (one vector or a batch)."""
        nearest: dict[str, object] = {"column": EMBEDDING_COLUMN, "q": query, "k": k, "metric": METRIC}
        if exact or self.exact:
            nearest["use_index"] = False
            return nearest
        nearest.update(nprobes=self.nprobes, ef=max(self.ef, k))  # HNSW refuses a list shorter than k
        if self.refine_factor is not None:
            nearest["refine_factor"] = self.refine_factor
        return nearest


def similarity(distance: float) -> float:
    """Cosine similarity from Lance's cosine distance (1 - cos)."""
    return 1.0 - distance if math.isfinite(distance) else -1.0
