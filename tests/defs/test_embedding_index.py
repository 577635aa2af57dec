"""`embedding_index` through Dagster (in process) over a real Lance table with an embedding column:
below the minimum it records exact search, then it builds the index and records the version it
indexed, its parameters and its recall, then it extends it; its checks pass on each commit."""

from __future__ import annotations

import dagster as dg

from kinetics_assets.defs.embedding_index import embedding_index
from kinetics_assets.table import open_table
from resources import StorageResource
from tests.harness.embeddings import clip_ids, embedded_shard, publish

WIDTH = 32
SMALL = {"min_rows": 300, "rows_per_partition": 256, "recall_queries": 20}


def _materialize(uri: str, data_root, config: dict | None = None):
    result = dg.materialize(
        [embedding_index],
        resources={"storage": StorageResource(data_root=str(data_root), lance_uri=uri)},
        run_config={"ops": {"embedding_index": {"config": {**SMALL, **(config or {})}}}},
        raise_on_error=False,
    )
    mats = result.get_asset_materialization_events()
    metadata = mats[0].event_specific_data.materialization.metadata if mats else {}
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return result, {k: v.value for k, v in metadata.items()}, checks


def test_records_exact_search_then_builds_then_extends_the_index(tmp_path):
    uri = str(tmp_path / "t.lance")
    embedded_shard(uri, "part_0", 200, width=WIDTH, seed=0, failed=4)
    result, meta, checks = _materialize(uri, tmp_path)
    assert result.success
    assert meta["action"] == "below_minimum"
    assert meta["index_type"] == "none (exact search)"
    assert meta["embedded_rows"] == meta["dagster/row_count"] == 196
    assert meta["lance_version"] == meta["read_version"] == open_table(uri).version
    assert checks["index_recall"].passed
    assert checks["index_commit_kept_rows"].passed

    embedded_shard(uri, "part_1", 300, width=WIDTH, seed=1)
    result, meta, checks = _materialize(uri, tmp_path)
    assert result.success
    assert meta["action"] == "created"
    assert meta["index_type"] == "IVF_HNSW_SQ"
    assert meta["index_parameters"] == {"metric": "cosine", "num_partitions": 496 // 256}
    assert meta["lance_version"] == meta["read_version"] + 1 == open_table(uri).version
    assert (meta["rows_unindexed"], meta["index_segments"]) == (0, 1)
    assert meta["recall_at_10"] >= 0.9
    assert meta["queries"] == 20
    assert checks["index_recall"].passed
    assert checks["index_commit_kept_rows"].passed
    assert checks["index_commit_kept_rows"].metadata["rows"].value == 500

    embedded_shard(uri, "part_2", 100, width=WIDTH, seed=2)
    result, meta, checks = _materialize(uri, tmp_path, {"min_recall": 1.01})  # a bar no index can pass
    assert meta["action"] == "updated"
    assert (meta["rows_unindexed"], meta["index_segments"]) == (0, 2)
    assert not checks["index_recall"].passed
    assert checks["index_commit_kept_rows"].passed


def test_fails_naming_what_to_materialize_first(tmp_path):
    uri = str(tmp_path / "t.lance")
    result, _, _ = _materialize(uri, tmp_path)
    assert not result.success
    assert "materialize transcoded_videos" in str(result.get_step_failure_events()[0].step_failure_data.error)
    publish(uri, "part_0", clip_ids("part_0", 3))
    result, _, _ = _materialize(uri, tmp_path)
    assert not result.success
    assert "materialize clip_embeddings" in str(result.get_step_failure_events()[0].step_failure_data.error)
