"""`embedding_index`: the table's ANN index on the clip embeddings, built once there are enough of
them and kept current as shards land, with its recall against exact search on a sample.

Not partitioned: one index covers every shard. It depends on `clip_embeddings` for lineage and
staleness (on all its partitions, as `qa_report` does on the shard assets); run it on its own
(`--select embedding_index`) after shards' embeddings land. A shard landing meanwhile is searched
exactly until the next run adds it. An index commit never adds or removes a row (DESIGN.md, "The
embedding index and search"), which the `index_commit_kept_rows` check confirms on every run.
"""

from collections import Counter
from typing import Any

import dagster as dg

from kinetics_assets.defs.engine_config import RunConfig, adding_engine_fields, engine_fields, to_engine
from kinetics_assets.defs.qa_report import require_table
from kinetics_assets.search.config import IndexConfig, SearchTuning
from resources import StorageResource

EMBEDDINGS = dg.AssetKey("clip_embeddings")

INDEX_CHECKS = [
    dg.AssetCheckSpec(
        "index_recall",
        asset="embedding_index",
        description="recall@k of the index against exact search on a sample of the table's vectors is at "
        "least min_recall (no index: every search is exact)",
    ),
    dg.AssetCheckSpec(
        "index_commit_kept_rows",
        asset="embedding_index",
        description="the index commit holds exactly the rows (video ids, per shard) of the version before it",
    ),
]


@adding_engine_fields(
    engine_fields(
        IndexConfig, "index_type", "min_rows", "rows_per_partition", "num_sub_vectors", "rebuild_growth", "max_deltas"
    ),
    engine_fields(SearchTuning, "nprobes", "ef", "refine_factor"),
)
class EmbeddingIndexRunConfig(RunConfig):
    """How the index is built (`index_type`, `min_rows`, ...) and searched when its recall is measured
    (`nprobes`, `ef`, `refine_factor`: what `kinetics search` uses by default).
    """

    recall_queries: int = 100
    """Table vectors searched both ways to measure recall."""
    recall_k: int = 10
    min_recall: float = 0.9
    """The `index_recall` check fails below this."""


def _rows_by_shard(uri: str, options: dict[str, str] | None, version: int) -> tuple[Counter[str], int]:
    from kinetics_assets.table import open_table

    table = open_table(uri, options, version=version).to_table(columns=["video_id", "shard"])
    return Counter(table["shard"].to_pylist()), len(set(table["video_id"].to_pylist()))


@dg.asset(
    deps=[EMBEDDINGS],
    check_specs=INDEX_CHECKS,
    group_name="kinetics",
    kinds={"lance"},
    description="The table's ANN index on the clip embeddings (cosine): created once there are enough rows, "
    "extended as shards land, rebuilt when outgrown; with its recall@10 against exact search.",
)
def embedding_index(
    context: dg.AssetExecutionContext, config: EmbeddingIndexRunConfig, storage: StorageResource
) -> dg.MaterializeResult:
    # Lance: loaded by the step, not the code location.
    from kinetics_assets.search import SearchError, measure_recall, update_index
    from kinetics_assets.table import open_table

    require_table("embedding_index", storage)
    uri, options = storage.lance_uri, storage.storage_options
    try:
        update = update_index(uri, config=to_engine(config, IndexConfig), storage_options=options)
    except SearchError as exc:
        raise dg.Failure(f"embedding_index: {exc}") from exc
    after = update.after
    context.log.info(
        "embedding_index: %s at version %d (read %d): %d embedded rows, %d indexed, %d unindexed, %.1f s",
        update.action,
        update.version,
        update.read_version,
        after.embedded_rows,
        after.indexed_rows,
        after.unindexed_rows,
        update.seconds,
    )
    metadata: dict[str, Any] = {
        "lance_uri": uri,
        "lance_version": update.version,
        "read_version": update.read_version,
        "action": update.action,
        "embedded_rows": after.embedded_rows,
        "rows_indexed": after.indexed_rows,
        "rows_unindexed": after.unindexed_rows,
        "index_type": after.index_type or "none (exact search)",
        "index_parameters": dg.MetadataValue.json(after.parameters),
        "index_segments": after.segments,
        "seconds": round(update.seconds, 3),
        "dagster/row_count": after.embedded_rows,
    }
    recall_passed = True
    recall_metadata: dict[str, Any] = {"note": "no index: every search is exact"}
    if after.exists:
        report = measure_recall(
            open_table(uri, options, version=update.version),
            k=config.recall_k,
            queries=config.recall_queries,
            tuning=to_engine(config, SearchTuning),
        )
        recall_passed = report.recall >= config.min_recall
        recall_metadata = {
            f"recall_at_{report.k}": report.recall,
            "queries": report.queries,
            "ann_p50_ms": round(report.ann_p50_ms, 3),
            "exact_p50_ms": round(report.exact_p50_ms, 3),
        }
        metadata.update({"recall_k": report.k, **recall_metadata})

    kept = True
    kept_metadata: dict[str, Any] = {"index_commit": False}
    if update.version != update.read_version:
        shards_now, ids_now = _rows_by_shard(uri, options, update.version)
        shards_before, ids_before = _rows_by_shard(uri, options, update.version - 1)
        kept = shards_now == shards_before and ids_now == ids_before == shards_now.total()
        kept_metadata = {"index_commit": True, "rows": ids_now, "rows_before": ids_before, "shards": len(shards_now)}
    checks = [
        dg.AssetCheckResult(check_name="index_recall", passed=recall_passed, metadata=recall_metadata),
        dg.AssetCheckResult(check_name="index_commit_kept_rows", passed=kept, metadata=kept_metadata),
    ]
    return dg.MaterializeResult(
        metadata=metadata, data_version=dg.DataVersion(f"v{update.version}"), check_results=checks
    )
