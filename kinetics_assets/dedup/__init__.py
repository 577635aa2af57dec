"""Near-duplicate videos of the table: pairs (the fingerprint's, through one pair type that an
embedding's pairs share), their groups with one `duplicate_of` each, and the side table that keeps
them beside the main one. No Dagster, no Ray.

The public names below load their module on first use: the code location reads the settings'
defaults (`Blocking`) without loading Lance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kinetics_assets.lazy import lazy_exports

if TYPE_CHECKING:
    from kinetics_assets.dedup.groups import ClipInfo, DuplicateGroup, group_pairs, keeper_order
    from kinetics_assets.dedup.pairs import (
        Blocking,
        ClipHashes,
        DuplicatePair,
        Reason,
        candidate_pairs,
        fingerprint_pairs,
    )
    from kinetics_assets.dedup.semantic import EmbeddingPairs, embedding_pairs
    from kinetics_assets.dedup.store import (
        NEAR_DUPLICATES_SCHEMA,
        NearDuplicates,
        StoredNearDuplicates,
        duplicate_of,
        find_near_duplicates,
        near_duplicates_uri,
        read_near_duplicates,
        write_near_duplicates,
    )

_EXPORTS = {
    "ClipInfo": "groups",
    "DuplicateGroup": "groups",
    "group_pairs": "groups",
    "keeper_order": "groups",
    "Blocking": "pairs",
    "ClipHashes": "pairs",
    "DuplicatePair": "pairs",
    "Reason": "pairs",
    "candidate_pairs": "pairs",
    "EmbeddingPairs": "semantic",
    "embedding_pairs": "semantic",
    "fingerprint_pairs": "pairs",
    "NEAR_DUPLICATES_SCHEMA": "store",
    "NearDuplicates": "store",
    "StoredNearDuplicates": "store",
    "duplicate_of": "store",
    "find_near_duplicates": "store",
    "near_duplicates_uri": "store",
    "read_near_duplicates": "store",
    "write_near_duplicates": "store",
}
__all__ = [
    "NEAR_DUPLICATES_SCHEMA",
    "Blocking",
    "ClipHashes",
    "ClipInfo",
    "DuplicateGroup",
    "DuplicatePair",
    "EmbeddingPairs",
    "NearDuplicates",
    "Reason",
    "StoredNearDuplicates",
    "candidate_pairs",
    "duplicate_of",
    "embedding_pairs",
    "find_near_duplicates",
    "fingerprint_pairs",
    "group_pairs",
    "keeper_order",
    "near_duplicates_uri",
    "read_near_duplicates",
    "write_near_duplicates",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
