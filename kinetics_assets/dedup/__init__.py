"""Near-duplicate videos of the table: pairs (the fingerprint's, through one pair type that an
embedding's pairs share), their groups with one `duplicate_of` each, and the side table that keeps
them beside the main one. No Dagster, no Ray.
"""

from kinetics_assets.dedup.groups import ClipInfo, DuplicateGroup, group_pairs, keeper_order
from kinetics_assets.dedup.pairs import Blocking, ClipHashes, DuplicatePair, Reason, candidate_pairs, fingerprint_pairs
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

__all__ = [
    "NEAR_DUPLICATES_SCHEMA",
    "Blocking",
    "ClipHashes",
    "ClipInfo",
    "DuplicateGroup",
    "DuplicatePair",
    "NearDuplicates",
    "Reason",
    "StoredNearDuplicates",
    "candidate_pairs",
    "duplicate_of",
    "find_near_duplicates",
    "fingerprint_pairs",
    "group_pairs",
    "keeper_order",
    "near_duplicates_uri",
    "read_near_duplicates",
    "write_near_duplicates",
]
