"""`near_duplicates`: near-duplicate videos of the whole table at one pinned Lance version, kept in
the side table beside it (`dedup.store`), with their groups and the video each group keeps.

Not partitioned: it compares every shard with every other. Like `qa_report` it depends on the
partitioned `clip_fingerprints` (and `clip_embeddings`, whose pre-trained vectors add pairs by
meaning) for lineage and staleness only; run it on its own
(`--select near_duplicates`).
"""

from typing import Any

import dagster as dg

from kinetics_assets.dedup.pairs import Blocking
from kinetics_assets.defs.engine_config import adding_engine_fields, engine_fields, to_engine
from kinetics_assets.defs.qa_report import require_table, table_metadata
from kinetics_assets.media.fingerprint import MatchConfig
from resources import StorageResource

FINGERPRINTS = dg.AssetKey("clip_fingerprints")
EMBEDDINGS = dg.AssetKey("clip_embeddings")


@adding_engine_fields(
    engine_fields(MatchConfig, "max_bits", "min_share", "min_matched"), engine_fields(Blocking, "max_bucket")
)
class NearDuplicatesConfig(dg.Config):
    """When two clips are near-duplicates: at their best alignment, `min_share` of the seconds both
    picture have hashes within `max_bits` bits (of 64), and `min_matched` such seconds at least. A
    band value more than `max_bucket` clips share (a common picture) proposes no pair.
    """

    embedding_threshold: float | None = 0.97
    """Clips whose embeddings (pre-trained weights only) are at least this cosine-similar are
    near-duplicates too (reason "embedding"); None: fingerprints alone."""
    embedding_neighbours: int = 10
    """How many nearest clips of each clip the embedding pairs are taken from."""
    version: int | None = None
    """Lance version to compare; default the latest at the start of the run (recorded either way)."""
    max_table_rows: int = 200


NEAR_DUPLICATE_CHECKS = [
    dg.AssetCheckSpec(
        "fingerprinted_ok_videos",
        asset="near_duplicates",
        description="every ok video of the version read has a fingerprint, so that none is left out of the comparison",
    ),
]


@dg.asset(
    deps=[FINGERPRINTS, EMBEDDINGS],
    check_specs=NEAR_DUPLICATE_CHECKS,
    group_name="kinetics",
    kinds={"lance"},
    description="Near-duplicate pairs (re-encodes, resizes, crops, time shifts, overlapping segments) over the "
    "whole table from the clips' fingerprints (and pre-trained embeddings), grouped, with one duplicate_of per group, in the side table "
    "<table>.near_duplicates.lance.",
)
def near_duplicates(
    context: dg.AssetExecutionContext, config: NearDuplicatesConfig, storage: StorageResource
) -> dg.MaterializeResult:
    # Lance and numpy: loaded by the step, not the code location.
    from kinetics_assets.dedup import (
        EmbeddingPairs,
        embedding_pairs,
        find_near_duplicates,
        near_duplicates_uri,
        write_near_duplicates,
    )
    from kinetics_assets.qa.views import near_duplicate_pairs
    from kinetics_assets.table import open_table

    require_table("near_duplicates", storage)
    uri, options = storage.lance_uri, storage.storage_options
    ds = open_table(uri, options, version=config.version)
    context.log.info("near_duplicates: comparing %s at version %d", uri, ds.version)
    semantic = EmbeddingPairs(pairs=[], skipped="embedding_threshold is None")
    if config.embedding_threshold is not None:
        semantic = embedding_pairs(
            ds, threshold=config.embedding_threshold, neighbours=config.embedding_neighbours, storage_options=options
        )
    if semantic.skipped:
        context.log.info("near_duplicates: no pairs by embedding: %s", semantic.skipped)
    try:
        found = find_near_duplicates(
            ds,
            match=to_engine(config, MatchConfig),
            blocking=to_engine(config, Blocking),
            extra_pairs=semantic.pairs,
        )
    except ValueError as exc:  # no fingerprint column yet: say which asset to run
        raise dg.Failure(f"near_duplicates: {exc}") from exc
    side_version = write_near_duplicates(found, uri, storage_options=options)
    ok = ds.count_rows(filter="status = 'ok'")
    pairs = near_duplicate_pairs(ds, options)
    metadata: dict[str, Any] = {
        "lance_uri": uri,
        "lance_version": ds.version,
        "near_duplicates_uri": near_duplicates_uri(uri),
        "near_duplicates_version": side_version,
        "ok_videos": ok,
        "pairs": len(found.pairs),
        "pairs_by_embedding": len(semantic.pairs),
        "embedding_pairs_skipped": semantic.skipped or "",
        "groups": len(found.groups),
        "duplicates": found.duplicates,
        "seconds": round(found.seconds, 2),
        **{f"work_{k}": v for k, v in found.work.items()},
        "top_pairs": table_metadata(pairs.sort_by([("score", "descending")]), config.max_table_rows),
    }
    context.log.info(
        "near_duplicates: %d pairs in %d groups (%d videos to drop) among %d fingerprinted videos, %.1f s",
        len(found.pairs),
        len(found.groups),
        found.duplicates,
        found.work.get("clips", 0),
        found.seconds,
    )
    compared = found.work.get("clips", 0)
    check = dg.AssetCheckResult(
        check_name="fingerprinted_ok_videos",
        passed=compared == ok,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"ok_videos": ok, "fingerprinted": compared, "lance_version": ds.version},
    )
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(f"v{ds.version}"), check_results=[check])
