"""Recall@k of the index against exact search, on a sample of the table's own vectors as queries
(what `search --like` asks): the number the index is judged by, recorded with every index update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from kinetics_assets.search.config import EMBEDDING_COLUMN, EMBEDDING_STATUS_COLUMN, SearchTuning
from kinetics_assets.search.index import SearchError, embedding_width

if TYPE_CHECKING:
    import lance


@dataclass(frozen=True, kw_only=True)
class RecallReport:
    k: int
    queries: int
    recall: float
    """Mean share of the exact top k that the ANN search also returned."""
    ann_p50_ms: float
    exact_p50_ms: float


def sample_vectors(ds: lance.LanceDataset, n: int, *, seed: int = 0) -> np.ndarray:
    """Up to `n` embedded rows' vectors, drawn without replacement (float32 [n, D])."""
    width = embedding_width(ds)
    ids = ds.to_table(columns=[], filter=f"{EMBEDDING_STATUS_COLUMN} = 'ok'", with_row_id=True)["_rowid"]
    if len(ids) == 0:
        return np.zeros((0, width), dtype=np.float32)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(ids), size=min(n, len(ids)), replace=False))
    rows = ds._take_rows(pa.array(ids.to_numpy()[chosen]), columns=[EMBEDDING_COLUMN])  # noqa: SLF001 - by row id
    return vectors_of(rows[EMBEDDING_COLUMN])


def vectors_of(column: pa.ChunkedArray | pa.FixedSizeListArray) -> np.ndarray:
    """A fixed-size-list column as float32 [n, D]."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = array.type.list_size
    return array.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)


def measure_recall(
    ds: lance.LanceDataset,
    *,
    k: int = 10,
    queries: int = 100,
    tuning: SearchTuning = SearchTuning(),
    seed: int = 0,
) -> RecallReport:
    """Recall@k of the ANN search with `tuning` against the exact search, on `queries` sampled rows."""
    if k < 1 or queries < 1:
        raise ValueError(f"measure_recall: k and queries must be >= 1, got {k} and {queries}")
    sample = sample_vectors(ds, queries, seed=seed)
    if len(sample) == 0:
        raise SearchError("no embedded rows to measure recall on")
    found: list[float] = []
    ann_ms: list[float] = []
    exact_ms: list[float] = []
    for vector in sample:
        started = time.perf_counter()
        ann = _row_ids(ds, tuning.nearest(vector, k))
        ann_ms.append((time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        exact = _row_ids(ds, tuning.nearest(vector, k, exact=True))
        exact_ms.append((time.perf_counter() - started) * 1e3)
        found.append(len(ann & exact) / max(1, len(exact)))
    return RecallReport(
        k=k,
        queries=len(sample),
        recall=float(np.mean(found)),
        ann_p50_ms=float(np.median(ann_ms)),
        exact_p50_ms=float(np.median(exact_ms)),
    )


def _row_ids(ds: lance.LanceDataset, nearest: dict[str, object]) -> set[int]:
    table = ds.to_table(columns=[], nearest=nearest, with_row_id=True, disable_scoring_autoprojection=True)
    return set(table["_rowid"].to_pylist())
