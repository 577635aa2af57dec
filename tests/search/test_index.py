"""The embedding index's lifecycle on a real Lance table: none below the minimum, built once there are
enough rows, extended as shards land, rebuilt when the table outgrows its partitions; a shard that
landed after the last update, a re-run shard and a rewritten embedding are all found; its recall
against exact search; and index commits racing shard commits never add, drop or duplicate a row.
"""

from __future__ import annotations

import threading

import numpy as np

from kinetics_assets.search import IndexConfig, SearchTuning, index_state, measure_recall, search_clips, update_index
from kinetics_assets.table import open_table
from tests.harness.embeddings import clip_ids, embedded_shard, exact_top, normalised, write_embeddings

WIDTH = 32
SMALL = IndexConfig(min_rows=300, rows_per_partition=256, rebuild_growth=2.0)


def test_lifecycle_below_minimum_created_extended_current_rebuilt(tmp_path):
    uri = str(tmp_path / "t.lance")
    vectors = embedded_shard(uri, "part_0", 200, width=WIDTH, seed=0, failed=3)
    below = update_index(uri, config=SMALL)
    assert below.action == "below_minimum"
    assert below.version == below.read_version == open_table(uri).version
    assert not below.after.exists
    assert below.after.embedded_rows == 197

    vectors |= embedded_shard(uri, "part_1", 400, width=WIDTH, seed=1)
    created = update_index(uri, config=SMALL)
    assert created.action == "created"
    assert created.version == created.read_version + 1
    assert created.after.index_type == "IVF_HNSW_SQ"
    assert created.after.partitions == 597 // 256
    assert created.after.unindexed_rows == 0
    assert created.after.parameters["metric"] == "cosine"

    # A shard that lands after the update is not in the index, and is found all the same.
    vectors |= embedded_shard(uri, "part_2", 100, width=WIDTH, seed=2)
    landed = index_state(open_table(uri))
    assert landed.unindexed_rows == 100
    newcomer = clip_ids("part_2", 100)[3]
    assert search_clips(uri, vector=vectors[newcomer], top=1)[0].video_id == newcomer

    updated = update_index(uri, config=SMALL)
    assert updated.action == "updated"
    assert updated.version == updated.read_version + 1
    assert updated.after.unindexed_rows == 0
    assert updated.after.partitions == created.after.partitions  # assigned, not retrained
    assert (updated.before.segments, updated.after.segments) == (1, 2)  # a delta segment over part_2
    assert update_index(uri, config=SMALL).action == "current"

    # 697 rows in 2 partitions is over 2 x 256 per partition: retrain with more partitions.
    vectors |= embedded_shard(uri, "part_3", 400, width=WIDTH, seed=3)
    rebuilt = update_index(uri, config=SMALL)
    assert rebuilt.action == "rebuilt"
    assert rebuilt.after.partitions == 1097 // 256
    assert rebuilt.after.unindexed_rows == 0

    # Another index type asked for: rebuilt as that.
    pq = update_index(uri, config=IndexConfig(index_type="IVF_PQ", min_rows=300, rows_per_partition=256))
    assert pq.action == "rebuilt"
    assert pq.after.index_type == "IVF_PQ"
    assert pq.after.parameters["num_sub_vectors"] == WIDTH // 16


def test_recall_against_exact_search_on_a_sample(tmp_path):
    uri = str(tmp_path / "t.lance")
    for seed, shard in enumerate(("part_0", "part_1", "part_2")):
        embedded_shard(uri, shard, 400, width=WIDTH, seed=seed)
    update_index(uri, config=SMALL)
    ds = open_table(uri)
    good = measure_recall(ds, k=10, queries=40)
    assert good.queries == 40
    assert good.recall >= 0.9
    assert good.ann_p50_ms > 0
    assert good.exact_p50_ms > 0
    # Product quantisation with 2 sub-vectors of 16 dimensions and no re-ranking: recall measurably
    # lower, which re-ranking the candidates by their stored vectors restores.
    pq = IndexConfig(index_type="IVF_PQ", min_rows=300, rows_per_partition=256, num_sub_vectors=2)
    assert update_index(uri, config=pq).action == "rebuilt"
    ds = open_table(uri)
    coarse = measure_recall(ds, k=10, queries=40)
    assert coarse.recall < 0.8
    refined = measure_recall(ds, k=10, queries=40, tuning=SearchTuning(refine_factor=50))
    assert refined.recall >= 0.9


def test_rerun_shard_and_rewritten_embeddings_are_searched_as_they_are_now(tmp_path):
    uri = str(tmp_path / "t.lance")
    vectors = {}
    for seed, shard in enumerate(("part_0", "part_1")):
        vectors |= embedded_shard(uri, shard, 200, width=WIDTH, seed=seed)
    assert update_index(uri, config=SMALL).action == "created"

    # part_1 rewritten with new vectors: its fragment leaves the index; the new vectors are searched.
    rng = np.random.default_rng(7)
    moved = {v: normalised(rng.normal(size=WIDTH)) for v in clip_ids("part_1", 200)}
    write_embeddings(uri, moved, width=WIDTH)
    assert index_state(open_table(uri)).unindexed_rows == 200
    target = clip_ids("part_1", 200)[11]
    assert search_clips(uri, vector=moved[target], top=1)[0].video_id == target

    # part_0 re-run (new fragments, other ids): its old clips are gone from every search.
    rerun = embedded_shard(uri, "part_0", 50, width=WIDTH, seed=5, run="r1")
    hits = search_clips(uri, vector=rerun[clip_ids("part_0", 50)[0]], top=400, shards=["part_0"])
    assert {h.video_id for h in hits} == set(clip_ids("part_0", 50))
    assert update_index(uri, config=SMALL).action == "updated"
    state = index_state(open_table(uri))
    assert (state.embedded_rows, state.unindexed_rows) == (250, 0)
    now = {**moved, **rerun}
    query = normalised(rng.normal(size=WIDTH))
    exact = exact_top(now, query, 10)
    found = [h.video_id for h in search_clips(uri, vector=query, top=10, tuning=SearchTuning(nprobes=8, ef=200))]
    assert len(set(found) & set(exact)) >= 9


def _rows(uri: str, version: int) -> list[tuple[str, str]]:
    table = open_table(uri, version=version).to_table(columns=["video_id", "shard"])
    return sorted(zip(table["video_id"].to_pylist(), table["shard"].to_pylist(), strict=True))


def _race(uri: str) -> list[BaseException]:
    """Shard commits (three new shards, two re-runs) in one thread, index updates in a loop in another."""
    errors: list[BaseException] = []
    done = threading.Event()

    def shards() -> None:
        try:
            for seed, shard in enumerate(("part_2", "part_3", "part_0", "part_4", "part_1"), start=10):
                embedded_shard(uri, shard, 120, width=WIDTH, seed=seed, run=f"r{seed}")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
        finally:
            done.set()

    def index() -> None:
        try:
            while not done.is_set():
                update_index(uri, config=SMALL)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=shards), threading.Thread(target=index)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return errors


def test_index_commits_racing_shard_commits_never_change_the_rows(tmp_path):
    uri = str(tmp_path / "t.lance")
    for seed, shard in enumerate(("part_0", "part_1")):
        embedded_shard(uri, shard, 200, width=WIDTH, seed=seed)
    first = open_table(uri).version
    errors = _race(uri)
    assert not errors, errors
    final = update_index(uri, config=SMALL)

    latest = open_table(uri)
    operations = {v: type(latest.read_transaction(v).operation).__name__ for v in range(first + 1, latest.version + 1)}
    for version, operation in operations.items():
        rows = _rows(uri, version)
        assert len(rows) == len(set(rows)), f"version {version} holds a video twice"
        if operation == "CreateIndex":
            assert rows == _rows(uri, version - 1), f"index commit {version} changed the rows"
    assert list(operations.values()).count("CreateIndex") >= 2  # built during the race, then extended
    shards = [shard for _, shard in _rows(uri, latest.version)]
    assert {s: shards.count(s) for s in set(shards)} == {f"part_{i}": 120 for i in range(5)}
    assert (final.after.embedded_rows, final.after.unindexed_rows) == (600, 0)
    for i in range(5):
        assert len(search_clips(uri, vector=np.ones(WIDTH), top=500, shards=[f"part_{i}"])) == 120
