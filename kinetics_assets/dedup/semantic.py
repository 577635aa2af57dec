"""Near-duplicates by meaning: pairs of clips whose embeddings are nearly the same direction, found
through the embedding index (`search.semantic_pairs`), as `DuplicatePair`s beside the fingerprint's.

Only vectors of pre-trained weights count: a random stand-in model (the demo's) maps unlike clips to
alike vectors, so its pairs would be noise that groups drop as duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinetics_assets.dedup.pairs import DuplicatePair
from kinetics_assets.search import semantic_pairs

if TYPE_CHECKING:
    import lance


@dataclass(frozen=True, kw_only=True)
class EmbeddingPairs:
    """The pairs, or none and why (`skipped`)."""

    pairs: list[DuplicatePair]
    skipped: str | None = None


def embedding_pairs(
    ds: lance.LanceDataset,
    *,
    threshold: float,
    neighbours: int,
    storage_options: dict[str, str] | None = None,
) -> EmbeddingPairs:
    """Pairs at least `threshold` cosine-similar among each clip's `neighbours` nearest, at `ds`'s
    version; none, with the reason, where the table has no embeddings or any came from random weights.
    """
    if "embedding" not in ds.schema.names:
        return EmbeddingPairs(pairs=[], skipped="no embedding column: materialize clip_embeddings")
    embedded = ds.count_rows(filter="embedding_status = 'ok'")
    if embedded == 0:
        return EmbeddingPairs(pairs=[], skipped="no ok embedding")
    if "embedding_pretrained" not in ds.schema.names:
        return EmbeddingPairs(
            pairs=[], skipped="no embedding_pretrained column: whether the weights were real is unknown"
        )
    random = ds.count_rows(filter="embedding_status = 'ok' AND NOT embedding_pretrained")
    if random:
        return EmbeddingPairs(
            pairs=[],
            skipped=f"{random} of {embedded} embeddings are from RANDOM weights (embedding_pretrained = false)",
        )
    found = semantic_pairs(
        ds.uri, threshold=threshold, k=neighbours, storage_options=storage_options, version=ds.version
    )
    return EmbeddingPairs(
        pairs=[DuplicatePair(video_a=p.video_id, video_b=p.other_id, reason="embedding", score=p.score) for p in found]
    )
