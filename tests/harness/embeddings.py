"""Tables with clip embeddings for the search tests: shards published through the table's own shard
commit, then an `embedding` column (fixed_size_list<float16>[D], L2-normalised) and `embedding_status`
written per shard by the table's column write, as the clip_embeddings stage writes them.

Vectors are clustered (one centre per label, each clip near its label's centre), so that nearest
neighbours mean something and an index's recall can fall short of exact search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from kinetics_assets.table import add_missing_columns, commit_shard, write_columns, write_shard_fragments
from tests.harness.shards import CLASS_NAMES

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def embedding_fields(width: int) -> list[pa.Field]:
    return [pa.field("embedding", pa.list_(pa.float16(), width)), pa.field("embedding_status", pa.string())]


def normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def centres(width: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {label: normalised(rng.normal(size=width)) for label in CLASS_NAMES}


def clip_ids(shard: str, n: int, *, run: str = "") -> list[str]:
    return [f"{shard}{run}-{i:05d}" for i in range(n)]


def publish(uri: str, shard: str, ids: Sequence[str], *, failed: Sequence[str] = (), run: str = "r0") -> dict[str, str]:
    """Commit one shard's rows (labels cycled over CLASS_NAMES; `failed` ids get status failed); the labels."""
    labels = {video_id: CLASS_NAMES[i % len(CLASS_NAMES)] for i, video_id in enumerate(ids)}
    rows = [
        {
            "video_id": video_id,
            "shard": shard,
            "label": labels[video_id],
            "split": "val",
            "time_start": 10 * i,
            "time_end": 10 * i + 10,
            "duration_s": 10.0,
            "status": "failed" if video_id in failed else "ok",
            "encoder": run,
            "video": f"{run}:{video_id}".encode(),
        }
        for i, video_id in enumerate(ids)
    ]
    commit_shard(uri, shard, write_shard_fragments(rows, uri), properties={"step": run})
    return labels


def clustered(labels: Mapping[str, str], width: int, *, seed: int, spread: float = 0.8) -> dict[str, np.ndarray]:
    """One vector per clip: its label's centre plus noise of norm about `spread`, normalised."""
    rng = np.random.default_rng(seed)
    by_label = centres(width)
    return {
        video_id: normalised(by_label[label] + spread * rng.normal(size=width) / np.sqrt(width))
        for video_id, label in labels.items()
    }


def write_embeddings(
    uri: str, vectors: Mapping[str, np.ndarray], *, width: int, status: str = "ok", pretrained: bool | None = None
) -> int:
    """Set `embedding` and `embedding_status` of these clips (and `embedding_pretrained`, when given)
    in one column commit; the version it made."""
    fields = embedding_fields(width)
    if pretrained is not None:
        fields.append(pa.field("embedding_pretrained", pa.bool_()))
    add_missing_columns(uri, None, pa.schema(fields), "the embedding columns")
    ids = list(vectors)
    flat = np.stack([vectors[i] for i in ids]).astype(np.float16).ravel() if ids else np.zeros(0, np.float16)
    table = pa.table(
        {
            "video_id": pa.array(ids, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float16()), width),
            "embedding_status": pa.array([status] * len(ids), pa.string()),
            **({} if pretrained is None else {"embedding_pretrained": pa.array([pretrained] * len(ids), pa.bool_())}),
        }
    )
    return write_columns(uri, table, "embeddings")


def embedded_shard(
    uri: str, shard: str, n: int, *, width: int, seed: int, failed: int = 0, run: str = "r0"
) -> dict[str, np.ndarray]:
    """A shard of `n` clips, the first `failed` of them failed (no embedding), the rest embedded."""
    ids = clip_ids(shard, n)
    labels = publish(uri, shard, ids, failed=ids[:failed], run=run)
    vectors = clustered({i: labels[i] for i in ids[failed:]}, width, seed=seed)
    write_embeddings(uri, vectors, width=width)
    return vectors


def exact_top(vectors: Mapping[str, np.ndarray], query: np.ndarray, k: int) -> list[str]:
    """The brute-force top k by cosine similarity (float16-rounded, as the table stores them)."""
    ids = list(vectors)
    matrix = np.stack([vectors[i].astype(np.float16).astype(np.float32) for i in ids])
    scores = matrix @ normalised(query)
    order = np.argsort(-scores, kind="stable")[:k]
    return [ids[j] for j in order]
