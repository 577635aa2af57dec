"""Near-duplicates by embedding over a real Lance table: near copies pair up with the reason
"embedding", and vectors of random weights, or none at all, give no pairs and say why."""

from __future__ import annotations

import numpy as np

from kinetics_assets.dedup import embedding_pairs, group_pairs
from kinetics_assets.table import open_table
from tests.harness.embeddings import clip_ids, clustered, normalised, publish, write_embeddings

WIDTH = 32


def _table(uri: str, *, pretrained: bool) -> set[tuple[str, str]]:
    """A shard of 30 clustered clips and a shard of near copies of its first five; the copy pairs."""
    labels = publish(uri, "part_0", clip_ids("part_0", 30))
    vectors = clustered(labels, WIDTH, seed=1)
    originals = list(vectors)[:5]
    copies = clip_ids("copies", 5)
    publish(uri, "copies", copies)
    rng = np.random.default_rng(3)
    vectors |= {
        c: normalised(vectors[o] + 0.01 * rng.normal(size=WIDTH)) for o, c in zip(originals, copies, strict=True)
    }
    write_embeddings(uri, vectors, width=WIDTH, pretrained=pretrained)
    return {tuple(sorted(pair)) for pair in zip(originals, copies, strict=True)}


def test_near_copies_pair_up_by_embedding(tmp_path):
    uri = str(tmp_path / "t.lance")
    expected = _table(uri, pretrained=True)
    found = embedding_pairs(open_table(uri, None), threshold=0.99, neighbours=5)
    assert found.skipped is None
    assert {(p.video_a, p.video_b) for p in found.pairs} == expected
    assert {p.reason for p in found.pairs} == {"embedding"}
    assert all(p.score >= 0.99 for p in found.pairs)
    # They group with the fingerprint's pairs through the same type: one group per copy pair.
    assert len(group_pairs(found.pairs, {})) == len(expected)


def test_random_weights_and_missing_embeddings_give_no_pairs_and_say_why(tmp_path):
    uri = str(tmp_path / "random.lance")
    _table(uri, pretrained=False)
    found = embedding_pairs(open_table(uri, None), threshold=0.99, neighbours=5)
    assert found.pairs == []
    assert "RANDOM weights" in (found.skipped or "")
    bare = str(tmp_path / "bare.lance")
    publish(bare, "part_0", clip_ids("part_0", 3))
    found = embedding_pairs(open_table(bare, None), threshold=0.99, neighbours=5)
    assert found.pairs == []
    assert "clip_embeddings" in (found.skipped or "")
