"""The table's ANN index on `embedding`: built once there are enough embedded rows, then kept current
as shards land, and rebuilt when the table has outgrown the partitions it was trained with.

Exactly once: an index commit (Lance's CreateIndex) names index files and the fragments they cover,
never a fragment of data, so it neither adds nor removes a row. A shard commit that lands while the
index is built rebases past it (or the index commit is retried from the newest version); the rows of
a fragment the index does not cover, or no longer covers (a re-run shard, an embedding rewritten),
are searched exactly, so a query never misses a row for want of an index update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from kinetics_assets.search.config import (
    EMBEDDING_COLUMN,
    EMBEDDING_STATUS_COLUMN,
    INDEX_NAME,
    METRIC,
    IndexConfig,
    IndexType,
)
from kinetics_assets.table import open_table, retry_commit

if TYPE_CHECKING:
    import lance

IndexAction = Literal["below_minimum", "created", "updated", "rebuilt", "current"]


class SearchError(RuntimeError):
    """The table cannot be searched or indexed as asked (no embeddings, an unknown video, ...)."""


@dataclass(frozen=True, kw_only=True)
class IndexState:
    """The index as one table version holds it."""

    version: int
    embedded_rows: int
    index_type: IndexType | None = None
    partitions: int = 0
    """IVF partitions of the index's first (trained) segment."""
    segments: int = 0
    indexed_rows: int = 0
    unindexed_rows: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.index_type is not None


@dataclass(frozen=True, kw_only=True)
class IndexUpdate:
    action: IndexAction
    read_version: int
    """The version the update read: the rows it indexed are those of this version."""
    version: int
    """The version its commit made (`read_version` when it committed nothing)."""
    seconds: float
    before: IndexState
    after: IndexState


def embedding_width(ds: lance.LanceDataset) -> int:
    if EMBEDDING_COLUMN not in ds.schema.names:
        raise SearchError(
            f"the table has no {EMBEDDING_COLUMN!r} column yet: materialize clip_embeddings for a shard first"
        )
    kind = ds.schema.field(EMBEDDING_COLUMN).type
    if not pa.types.is_fixed_size_list(kind):
        raise SearchError(f"column {EMBEDDING_COLUMN!r} is {kind}, not a fixed-size list of floats")
    return int(kind.list_size)


def index_state(ds: lance.LanceDataset) -> IndexState:
    embedding_width(ds)
    embedded = ds.count_rows(f"{EMBEDDING_STATUS_COLUMN} = 'ok'")
    if not any(index.name == INDEX_NAME for index in ds.describe_indices()):
        return IndexState(version=ds.version, embedded_rows=embedded)
    stats = ds.stats.index_stats(INDEX_NAME)
    segments = stats.get("indices") or stats.get("segments") or [{}]
    first = segments[0]
    sub_index = first.get("sub_index") or {}
    parameters = {"metric": first.get("metric_type", METRIC), "num_partitions": first.get("num_partitions")}
    if "num_sub_vectors" in sub_index:
        parameters["num_sub_vectors"] = sub_index["num_sub_vectors"]
    return IndexState(
        version=ds.version,
        embedded_rows=embedded,
        index_type=stats["index_type"],
        partitions=int(first.get("num_partitions") or 0),
        segments=len(stats.get("num_indexed_rows_per_delta") or segments),
        indexed_rows=int(stats["num_indexed_rows"]),
        unindexed_rows=int(stats["num_unindexed_rows"]),
        parameters=parameters,
    )


def update_index(
    uri: str,
    *,
    config: IndexConfig = IndexConfig(),
    storage_options: dict[str, str] | None = None,
) -> IndexUpdate:
    """Build, extend or rebuild the index as the table now needs, in one index commit (or none)."""
    started = time.perf_counter()

    def attempt(_number: int) -> tuple[IndexAction, int, int, IndexState]:
        ds = open_table(uri, storage_options)
        state = index_state(ds)
        rows = state.embedded_rows
        if not state.exists and rows < config.min_rows:
            return "below_minimum", ds.version, ds.version, state
        if state.exists and state.index_type == config.index_type:
            if state.unindexed_rows == 0:
                return "current", ds.version, ds.version, state
            if not config.needs_rebuild(rows=rows, partitions=state.partitions, segments=state.segments):
                # A new segment over the unindexed fragments, assigned to the trained centroids. Lance's
                # default (merge into the existing segment) re-clusters the whole index into one
                # partition and rebuilds every graph (DESIGN.md); a rebuild is the one retrain.
                ds.optimize.optimize_indices(index_names=[INDEX_NAME], num_indices_to_merge=0)
                return "updated", state.version, _committed_version(uri, ds, state.version, storage_options), state
        action: IndexAction = "rebuilt" if state.exists else "created"
        built = ds.create_index(EMBEDDING_COLUMN, replace=True, **_build_arguments(config, ds, rows))
        return action, state.version, built.version, state

    action, read_version, version, before = retry_commit("the embedding index", uri, attempt, storage_options)
    after = index_state(open_table(uri, storage_options, version=version))
    return IndexUpdate(
        action=action,
        read_version=read_version,
        version=version,
        seconds=time.perf_counter() - started,
        before=before,
        after=after,
    )


def _build_arguments(config: IndexConfig, ds: lance.LanceDataset, rows: int) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "index_type": config.index_type,
        "name": INDEX_NAME,
        "metric": METRIC,
        "num_partitions": config.partitions_for(rows),
    }
    if config.index_type == "IVF_PQ":
        arguments["num_sub_vectors"] = config.sub_vectors_for(embedding_width(ds))
    return arguments


def _committed_version(uri: str, ds: lance.LanceDataset, read_version: int, options: dict[str, str] | None) -> int:
    """The version `optimize_indices` committed: the first after `read_version` that is an index commit."""
    if ds.version != read_version:
        return ds.version
    latest = open_table(uri, options)
    for version in range(read_version + 1, latest.version + 1):
        transaction = latest.read_transaction(version)
        if transaction is not None and type(transaction.operation).__name__ == "CreateIndex":
            return version
    return read_version
