"""Finding clips by vector: a query vector (a text's embedding) or another clip (`like`), with the
label, shard and status filters applied before the vector search (Lance prefilter), so the top k are
the top k of the clips that pass them. Also each clip's near neighbours above a similarity threshold:
semantic near-duplicates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import lance
import numpy as np

from kinetics_assets.search.config import EMBEDDING_COLUMN, EMBEDDING_STATUS_COLUMN, SearchTuning, similarity
from kinetics_assets.search.index import SearchError, embedding_width
from kinetics_assets.search.recall import vectors_of
from kinetics_assets.table import sql_literal

if TYPE_CHECKING:
    from collections.abc import Sequence

HIT_COLUMNS = ("video_id", "label", "shard", "split", "time_start", "time_end", "duration_s")


@functools.cache
def _session() -> lance.Session:
    return lance.Session()


def open_for_search(
    uri: str, storage_options: dict[str, str] | None = None, version: int | None = None
) -> lance.LanceDataset:
    """The table opened with the process's one Lance session, so that every search in a process
    shares the index cache: opened without it, each search loads the index again (BENCHMARKS.md).
    """
    return lance.dataset(uri, version=version, storage_options=storage_options or None, session=_session())


@dataclass(frozen=True, kw_only=True)
class SearchHit:
    video_id: str
    label: str | None
    shard: str
    split: str | None
    time_start: int | None
    """Seconds into the source video where the clip starts (Kinetics' annotation), when known."""
    time_end: int | None
    duration_s: float | None
    score: float
    """Cosine similarity to the query, 1 for the same direction."""


@dataclass(frozen=True, kw_only=True)
class SemanticPair:
    """Two clips whose embeddings are at least the threshold similar; `video_id` < `other_id`."""

    video_id: str
    other_id: str
    score: float
    reason: Literal["embedding"] = "embedding"


def search_filter(
    *,
    labels: Sequence[str] | None = None,
    shards: Sequence[str] | None = None,
    status: str | None = "ok",
    exclude: str | None = None,
) -> str:
    """The SQL predicate a search applies before its vector search: rows whose embedding is ok, and
    that pass every filter given.
    """
    # embedding_status 'ok' is what the stage writes beside a vector; testing the vector itself for
    # null would read every vector of the table before the search.
    terms = [f"{EMBEDDING_STATUS_COLUMN} = 'ok'"]
    if status is not None:
        terms.append(f"status = {sql_literal(status)}")
    if labels:
        terms.append(f"label IN ({', '.join(sql_literal(label) for label in labels)})")
    if shards:
        terms.append(f"shard IN ({', '.join(sql_literal(shard) for shard in shards)})")
    if exclude is not None:
        terms.append(f"video_id != {sql_literal(exclude)}")
    return " AND ".join(terms)


def clip_vector(ds: lance.LanceDataset, video_id: str) -> np.ndarray:
    """One clip's stored embedding (float32 [D]); SearchError when it has none."""
    embedding_width(ds)
    rows = ds.to_table(
        columns=["video_id", EMBEDDING_COLUMN, EMBEDDING_STATUS_COLUMN],
        filter=f"video_id = {sql_literal(video_id)}",
        limit=1,
    )
    if rows.num_rows == 0:
        raise SearchError(f"no video {video_id!r} in the table")
    if not rows[EMBEDDING_COLUMN].is_valid()[0].as_py():
        status = rows[EMBEDDING_STATUS_COLUMN][0].as_py()
        raise SearchError(f"video {video_id!r} has no embedding (embedding_status {status!r})")
    return vectors_of(rows[EMBEDDING_COLUMN])[0]


def search_clips(
    uri: str,
    *,
    vector: Sequence[float] | np.ndarray | None = None,
    like: str | None = None,
    top: int = 20,
    labels: Sequence[str] | None = None,
    shards: Sequence[str] | None = None,
    status: str | None = "ok",
    storage_options: dict[str, str] | None = None,
    version: int | None = None,
    tuning: SearchTuning = SearchTuning(),
) -> list[SearchHit]:
    """The `top` clips nearest to `vector`, or to the clip `like` (itself left out), best first."""
    if (vector is None) == (like is None):
        raise ValueError("search_clips: give exactly one of vector or like")
    if top < 1:
        raise ValueError(f"search_clips: top must be >= 1, got {top}")
    ds = open_for_search(uri, storage_options, version)
    width = embedding_width(ds)
    query = clip_vector(ds, like) if like is not None else np.asarray(vector, dtype=np.float32)
    if query.shape != (width,):
        raise SearchError(f"the query vector has shape {query.shape}; the table's embeddings have width {width}")
    norm = float(np.linalg.norm(query))
    if not norm > 0:
        raise SearchError("the query vector is zero or not finite")
    query = query / norm
    rows = None
    if not labels and not shards and status in (None, "ok"):
        rows = _unfiltered(ds, query, top, tuning, status=status, exclude=like)
    if rows is None:
        rows = ds.to_table(
            columns=[*HIT_COLUMNS, "_distance"],
            nearest=tuning.nearest(query, top),
            filter=search_filter(labels=labels, shards=shards, status=status, exclude=like),
            prefilter=True,
            disable_scoring_autoprojection=True,
        ).to_pylist()
    hits = [SearchHit(**{name: row[name] for name in HIT_COLUMNS}, score=similarity(row["_distance"])) for row in rows]
    return sorted(hits, key=lambda hit: (-hit.score, hit.video_id))


def _unfiltered(
    ds: lance.LanceDataset,
    query: np.ndarray,
    top: int,
    tuning: SearchTuning,
    *,
    status: str | None,
    exclude: str | None,
) -> list[dict[str, Any]] | None:
    """The search with no prefilter, when no filter but the defaults is asked for; None when a hit
    fails them (then the prefiltered search answers).

    A row has a vector only when its embedding is ok, and only ok rows are embedded (a re-run shard's
    new rows have none), and Lance never returns a row whose vector is null: so the default filters
    pass every hit, and the prefilter, which reads the filtered columns of every row of the table, is
    work for nothing (BENCHMARKS.md, "Embedding index"). Each hit is still checked.
    """
    table = ds.to_table(
        columns=[*HIT_COLUMNS, "status", EMBEDDING_STATUS_COLUMN, "_distance"],
        nearest=tuning.nearest(query, top + (exclude is not None)),
        disable_scoring_autoprojection=True,
    )
    rows = [row for row in table.to_pylist() if row["video_id"] != exclude]
    if any(row[EMBEDDING_STATUS_COLUMN] != "ok" or status not in (None, row["status"]) for row in rows):
        return None
    return rows[:top]


def semantic_pairs(
    uri: str,
    *,
    threshold: float,
    k: int = 10,
    storage_options: dict[str, str] | None = None,
    version: int | None = None,
    tuning: SearchTuning = SearchTuning(),
    batch_size: int = 256,
) -> list[SemanticPair]:
    """Every pair of ok clips, one of which is among the other's `k` nearest and at least `threshold`
    cosine-similar: candidates for near-duplicates by meaning (re-uploads, overlapping segments), best
    first. Each clip's neighbours come from the index (exact below its minimum), so this is n queries,
    not n^2 comparisons.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"semantic_pairs: threshold must be in [-1, 1], got {threshold}")
    if k < 1 or batch_size < 1:
        raise ValueError(f"semantic_pairs: k and batch_size must be >= 1, got {k} and {batch_size}")
    ds = open_for_search(uri, storage_options, version)
    embedding_width(ds)
    where = search_filter()
    best: dict[tuple[str, str], float] = {}
    for batch in ds.to_batches(columns=["video_id", EMBEDDING_COLUMN], filter=where, batch_size=batch_size):
        ids = batch["video_id"].to_pylist()
        queries = vectors_of(batch[EMBEDDING_COLUMN])
        nearest = tuning.nearest(queries, k + 1)  # + 1: each clip finds itself
        nearest["distance_range"] = (None, np.nextafter(1.0 - threshold, np.inf))
        found = ds.to_table(
            columns=["video_id", "_distance"],
            nearest=nearest,
            filter=where,
            prefilter=True,
            disable_scoring_autoprojection=True,
        )
        for query_index, other, distance in zip(
            found["query_index"].to_pylist(), found["video_id"].to_pylist(), found["_distance"].to_pylist(), strict=True
        ):
            own = ids[query_index]
            score = similarity(distance)
            if other == own or score < threshold:
                continue
            pair = (own, other) if own < other else (other, own)
            best[pair] = max(score, best.get(pair, -1.0))
    pairs = [SemanticPair(video_id=a, other_id=b, score=score) for (a, b), score in best.items()]
    return sorted(pairs, key=lambda p: (-p.score, p.video_id, p.other_id))
