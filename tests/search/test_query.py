"""`search_clips` and `semantic_pairs` over a real Lance table with an embedding column: the same
answers as brute force below the index's minimum, filters applied before the top k, a clip searched
by example leaves itself out, and the errors name what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from kinetics_assets.search import (
    IndexConfig,
    SearchError,
    clip_vector,
    search_clips,
    semantic_pairs,
    update_index,
)
from tests.harness.embeddings import (
    centres,
    clip_ids,
    embedded_shard,
    exact_top,
    normalised,
    publish,
    write_embeddings,
)
from tests.harness.shards import CLASS_NAMES

WIDTH = 32


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Two shards of 60 clips (5 failed in each, without embeddings): below the index's minimum."""
    uri = str(tmp_path_factory.mktemp("search") / "t.lance")
    vectors = {}
    for seed, shard in enumerate(("part_0", "part_1")):
        vectors.update(embedded_shard(uri, shard, 60, width=WIDTH, seed=seed, failed=5))
    return uri, vectors


def test_exact_search_matches_brute_force_and_reports_clip_fields(table):
    uri, vectors = table
    query = centres(WIDTH)["playing guitar"]
    hits = search_clips(uri, vector=query, top=10)
    assert [h.video_id for h in hits] == exact_top(vectors, query, 10)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert 0 < scores[-1] <= scores[0] <= 1.0001
    top = hits[0]
    assert top.label == "playing guitar"
    assert top.shard in {"part_0", "part_1"}
    assert top.split == "val"
    assert top.time_end == top.time_start + 10
    assert top.duration_s == 10.0
    expected = float(normalised(vectors[top.video_id].astype(np.float16).astype(np.float32)) @ query)
    assert top.score == pytest.approx(expected, abs=2e-3)


def test_like_uses_the_clips_own_vector_and_leaves_it_out(table):
    uri, vectors = table
    target = clip_ids("part_1", 60)[7]
    hits = search_clips(uri, like=target, top=5)
    assert target not in [h.video_id for h in hits]
    expected = [v for v in exact_top(vectors, vectors[target], 6) if v != target][:5]
    assert [h.video_id for h in hits] == expected
    assert np.allclose(clip_vector_of(uri, target), vectors[target], atol=1e-3)


def clip_vector_of(uri, video_id):
    from kinetics_assets.table import open_table

    return clip_vector(open_table(uri), video_id)


def test_filters_apply_before_the_top_k(table):
    uri, vectors = table
    query = centres(WIDTH)["abseiling"]
    # Only part_1's "air drumming" clips: fewer than top, and none of them near the query, yet all
    # of them come back (a filter applied after a top 20 would return none).
    hits = search_clips(uri, vector=query, top=20, labels=["air drumming"], shards=["part_1"])
    in_scope = {
        v for i, v in enumerate(clip_ids("part_1", 60)) if CLASS_NAMES[i % len(CLASS_NAMES)] == "air drumming"
    } & set(vectors)
    assert {h.video_id for h in hits} == in_scope
    assert {h.label for h in hits} == {"air drumming"}
    two_labels = search_clips(uri, vector=query, top=200, labels=["abseiling", "riding a bike"])
    assert {h.label for h in two_labels} == {"abseiling", "riding a bike"}
    assert len(two_labels) == sum(1 for v in vectors if _label(v) in {"abseiling", "riding a bike"})


def _label(video_id: str) -> str:
    return CLASS_NAMES[int(video_id.split("-")[1]) % len(CLASS_NAMES)]


def test_failed_rows_are_never_hits_and_status_filters_the_row_status(table):
    uri, vectors = table
    failed = set(clip_ids("part_0", 60)[:5]) | set(clip_ids("part_1", 60)[:5])
    hits = search_clips(uri, vector=centres(WIDTH)["abseiling"], top=500, status=None)
    assert len(hits) == len(vectors) == 110
    assert not failed & {h.video_id for h in hits}
    assert search_clips(uri, vector=centres(WIDTH)["abseiling"], top=500, status="failed") == []


def test_errors_name_what_is_missing(table, tmp_path):
    uri, _ = table
    with pytest.raises(SearchError, match="no video 'nope'"):
        search_clips(uri, like="nope")
    failed_id = clip_ids("part_0", 60)[0]
    with pytest.raises(SearchError, match=f"video '{failed_id}' has no embedding"):
        search_clips(uri, like=failed_id)
    with pytest.raises(SearchError, match="width 32"):
        search_clips(uri, vector=np.ones(16))
    with pytest.raises(ValueError, match="exactly one of vector or like"):
        search_clips(uri)
    bare = str(tmp_path / "bare.lance")
    publish(bare, "part_0", clip_ids("part_0", 3))
    with pytest.raises(SearchError, match="no 'embedding' column yet"):
        search_clips(bare, vector=np.ones(WIDTH))


def _with_near_copies(uri: str, vectors: dict, rng: np.random.Generator) -> set[tuple[str, str]]:
    """A third shard whose clips are near copies of part_0's first eight: the pairs expected."""
    originals = [v for v in clip_ids("part_0", 60) if v in vectors][:8]
    copies = clip_ids("copies", 8)
    publish(uri, "copies", copies)
    near = {
        c: normalised(vectors[o] + 0.02 * rng.normal(size=WIDTH) / np.sqrt(WIDTH))
        for o, c in zip(originals, copies, strict=True)
    }
    write_embeddings(uri, near, width=WIDTH)
    return {tuple(sorted(pair)) for pair in zip(originals, copies, strict=True)}


@pytest.mark.parametrize("indexed", [False, True], ids=["exact", "indexed"])
def test_semantic_pairs_finds_near_copies_once_each(tmp_path, indexed):
    uri = str(tmp_path / "t.lance")
    vectors = {}
    for seed, shard in enumerate(("part_0", "part_1", "part_2", "part_3", "part_4")):
        vectors.update(embedded_shard(uri, shard, 60, width=WIDTH, seed=seed, failed=2))
    expected = _with_near_copies(uri, vectors, np.random.default_rng(9))
    if indexed:
        update = update_index(uri, config=IndexConfig(min_rows=256, rows_per_partition=256))
        assert update.action == "created"
    pairs = semantic_pairs(uri, threshold=0.99, k=5)
    assert {(p.video_id, p.other_id) for p in pairs} == expected
    assert all(p.reason == "embedding" and p.video_id < p.other_id and p.score >= 0.99 for p in pairs)
    assert [p.score for p in pairs] == sorted((p.score for p in pairs), reverse=True)
    loose = semantic_pairs(uri, threshold=0.5, k=3)
    assert expected <= {(p.video_id, p.other_id) for p in loose}
    assert len({(p.video_id, p.other_id) for p in loose}) == len(loose)


def test_rows_outside_the_default_filters_are_never_hits_even_with_a_vector(tmp_path):
    # Without label or shard filters the search runs unfiltered and checks each hit; these rows break
    # what the stage guarantees (a vector only beside an ok embedding of an ok row), and are still left out.
    uri = str(tmp_path / "t.lance")
    vectors = embedded_shard(uri, "part_0", 60, width=WIDTH, seed=0)
    ids = clip_ids("part_0", 60)
    write_embeddings(uri, {ids[0]: vectors[ids[0]]}, width=WIDTH, status="failed")
    publish(uri, "part_1", clip_ids("part_1", 2), failed=clip_ids("part_1", 2))
    write_embeddings(uri, dict.fromkeys(clip_ids("part_1", 2), vectors[ids[1]]), width=WIDTH)
    hits = search_clips(uri, vector=vectors[ids[0]], top=5)
    assert ids[0] not in [h.video_id for h in hits]
    assert not {h.video_id for h in hits} & set(clip_ids("part_1", 2))
    assert len(hits) == 5
    assert [h.video_id for h in search_clips(uri, like=ids[1], top=3)] == [
        v for v in exact_top(vectors, vectors[ids[1]], 5) if v not in (ids[0], ids[1])
    ][:3]
    everything = search_clips(uri, vector=vectors[ids[0]], top=100, status=None)
    assert set(clip_ids("part_1", 2)) <= {h.video_id for h in everything}  # any row status
    assert ids[0] not in {h.video_id for h in everything}  # never an embedding that is not ok
