"""Vector search over the table's clip embeddings: the ANN index on `embedding` (built once there are
enough rows, kept current as shards land), its recall against exact search, `search_clips` by vector
or by example with filters, and `semantic_pairs` (near-duplicates by meaning). No Dagster, no Ray.

config.py holds the settings, index.py the index's lifecycle, recall.py its measurement, query.py
the searches. The public names below load their module on first use, so importing the package (as
the code location does, for the index's settings) imports no Lance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kinetics_assets.lazy import lazy_exports

if TYPE_CHECKING:
    from kinetics_assets.search.config import (
        EMBEDDING_COLUMN,
        EMBEDDING_STATUS_COLUMN,
        INDEX_NAME,
        INDEX_TYPES,
        IndexConfig,
        IndexType,
        SearchTuning,
    )
    from kinetics_assets.search.index import (
        IndexAction,
        IndexState,
        IndexUpdate,
        SearchError,
        index_state,
        update_index,
    )
    from kinetics_assets.search.query import SearchHit, SemanticPair, clip_vector, search_clips, semantic_pairs
    from kinetics_assets.search.recall import RecallReport, measure_recall

_EXPORTS = {
    "EMBEDDING_COLUMN": "config",
    "EMBEDDING_STATUS_COLUMN": "config",
    "INDEX_NAME": "config",
    "INDEX_TYPES": "config",
    "IndexConfig": "config",
    "IndexType": "config",
    "SearchTuning": "config",
    "IndexAction": "index",
    "IndexState": "index",
    "IndexUpdate": "index",
    "SearchError": "index",
    "index_state": "index",
    "update_index": "index",
    "SearchHit": "query",
    "SemanticPair": "query",
    "clip_vector": "query",
    "search_clips": "query",
    "semantic_pairs": "query",
    "RecallReport": "recall",
    "measure_recall": "recall",
}
__all__ = [
    "EMBEDDING_COLUMN",
    "EMBEDDING_STATUS_COLUMN",
    "INDEX_NAME",
    "INDEX_TYPES",
    "IndexAction",
    "IndexConfig",
    "IndexState",
    "IndexType",
    "IndexUpdate",
    "RecallReport",
    "SearchError",
    "SearchHit",
    "SearchTuning",
    "SemanticPair",
    "clip_vector",
    "index_state",
    "measure_recall",
    "search_clips",
    "semantic_pairs",
    "update_index",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
