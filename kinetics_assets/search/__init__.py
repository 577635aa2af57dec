"""Vector search over the table's clip embeddings: the ANN index on `embedding` (built once there are
enough rows, kept current as shards land), its recall against exact search, `search_clips` by vector
or by example with filters, and `semantic_pairs` (near-duplicates by meaning). No Dagster, no Ray.

config.py holds the settings, index.py the index's lifecycle, recall.py its measurement, query.py
the searches.
"""

from kinetics_assets.search.config import (
    EMBEDDING_COLUMN,
    EMBEDDING_STATUS_COLUMN,
    INDEX_NAME,
    INDEX_TYPES,
    IndexConfig,
    IndexType,
    SearchTuning,
)
from kinetics_assets.search.index import IndexAction, IndexState, IndexUpdate, SearchError, index_state, update_index
from kinetics_assets.search.query import SearchHit, SemanticPair, clip_vector, search_clips, semantic_pairs
from kinetics_assets.search.recall import RecallReport, measure_recall

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
