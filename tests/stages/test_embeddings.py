"""clip_embeddings, a model stage on the one shard loop: the tiny random SigLIP over generated clips
in a real Lance table, in this process. The stored vector is the bare model's on the same frames;
batching across videos and shards changes nothing; a model of another width is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime

import lance
import numpy as np
import pyarrow as pa
import pytest

from kinetics_assets.embed.model import ClipEmbedder, EmbeddingModelConfig, pool_clip
from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.stages import InProcessExecutor, run_column_stage
from kinetics_assets.stages.embeddings import ClipEmbeddingsStage
from kinetics_assets.table import add_missing_columns, commit_shard, write_shard_fragments
from tests.harness.exotic_clips import exotic_clip_bytes, frame_pattern
from tests.harness.tiny_siglip import TINY_SIGLIP_ID, save_tiny_siglip_model

FPS, WIDTH = 10, 32


def _clip(frames: int, offset: int) -> bytes:
    return exotic_clip_bytes(
        container_format="mp4",
        width=64,
        height=48,
        fps=FPS,
        frames=frames,
        pattern=lambda i, w, h: frame_pattern(i + offset, w, h),
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> EmbeddingModelConfig:
    folder = save_tiny_siglip_model(tmp_path_factory.mktemp("tiny_siglip"))
    return EmbeddingModelConfig(model_id=TINY_SIGLIP_ID, local_path=folder, device="cpu", batch_size=5)


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    return {
        "s1-a": _clip(30, 0),
        "s1-b": _clip(20, 40),
        "s1-short": _clip(5, 80),  # fewer frames than the sampling's 8
        "s1-corrupt": b"\x00not a video\x00" * 64,
        "s2-a": _clip(30, 120),
        "s2-b": _clip(25, 160),
    }


@pytest.fixture
def uri(tmp_path, clips) -> str:
    uri = str(tmp_path / "t.lance")
    for shard in ("s1", "s2"):
        rows = [
            {
                "video_id": video_id,
                "shard": shard,
                "status": "ok",
                "video": data,
                "duration_s": 3.0,
                "frames": None if video_id.endswith("corrupt") else len(frame_timestamps(data)),
                "processed_at": datetime.now(UTC),
            }
            for video_id, data in clips.items()
            if video_id.startswith(shard)
        ]
        commit_shard(uri, shard, write_shard_fragments(rows, uri))
    return uri


def _run(uri: str, stage: ClipEmbeddingsStage, shards=("s1", "s2")) -> dict:
    results = run_column_stage(
        stage, list(shards), lance_uri=uri, storage_options=None, executor=InProcessExecutor(), log=lambda _: None
    )
    return {r.shard: r for r in results}


def test_every_ok_video_gets_a_unit_float16_vector_of_the_model_width(uri, model, clips):
    results = _run(uri, ClipEmbeddingsStage(model=model, pretrained=False))
    assert results["s1"].counts == {"ok": 3, "failed": 1}
    assert results["s2"].counts == {"ok": 2, "failed": 0}
    assert results["s1"].model is not None
    assert results["s1"].model.model_id == TINY_SIGLIP_ID
    failed = next(r for r in results["s1"].rows if r.status == "failed")
    assert failed.error.startswith("s1-corrupt: ")
    # The corrupt video fails the first check only; s2's checks all pass.
    assert not results["s1"].checks["every_ok_video_has_embedding"].passed
    assert results["s1"].checks["embeddings_unit_norm"].passed
    assert results["s1"].checks["embedding_frames_within_clip"].passed
    assert all(v.passed for v in results["s2"].checks.values())

    ds = lance.dataset(uri)
    assert ds.schema.field("embedding").type == pa.list_(pa.float16(), WIDTH)
    rows = {r["video_id"]: r for r in ds.to_table().to_pylist()}
    assert rows["s1-corrupt"]["embedding"] is None
    assert rows["s1-corrupt"]["embedding_status"] == "failed"
    for video_id in ("s1-a", "s1-b", "s1-short", "s2-a", "s2-b"):
        row = rows[video_id]
        vector = np.asarray(row["embedding"], dtype=np.float32)
        assert len(vector) == WIDTH
        assert abs(np.linalg.norm(vector) - 1) < 1e-2
        assert row["embedding_model"] == TINY_SIGLIP_ID
        assert row["embedding_model_revision"] == "local"
        assert row["embedding_pretrained"] is False
        assert row["embedding_sampling"] == "count=8"
    assert len(rows["s1-a"]["embedding_frames"]) == 8
    assert len(rows["s1-short"]["embedding_frames"]) == 5  # every frame of a shorter clip
    # Eight frames spread over the clip: the first in its first eighth, the last in its last.
    times = rows["s1-a"]["embedding_frames"]
    assert times[0] < 3.0 / 8
    assert times[-1] > 3.0 * 7 / 8 - 0.2
    assert float(np.dot(rows["s1-a"]["embedding"], rows["s2-a"]["embedding"])) < 0.999

    # Done with these settings: the next run skips s2, and redoes s1 for its failed video.
    again = _run(uri, ClipEmbeddingsStage(model=model, pretrained=False))
    assert again["s2"].unchanged
    assert again["s2"].videos == 0
    assert not again["s1"].unchanged
    assert again["s1"].counts == {"ok": 3, "failed": 1}


def test_the_stored_vector_is_the_bare_models_on_the_same_frames(uri, model, clips):
    stage = ClipEmbeddingsStage(model=model)
    _run(uri, stage)  # six videos of 5-8 frames in batches of 5 frames, across both shards
    stored = {r["video_id"]: r["embedding"] for r in lance.dataset(uri).to_table().to_pylist()}
    embedder = ClipEmbedder(model)
    sampling = FrameSampling("count", count=8)
    for video_id in ("s1-a", "s1-b", "s1-short", "s2-b"):
        data = clips[video_id]
        frames, _ = decode_frames(data, sampling.indices(frame_timestamps(data)))
        expected = pool_clip(embedder.embed_frames(frames))
        np.testing.assert_allclose(np.asarray(stored[video_id], dtype=np.float32), expected, atol=2e-3)


def test_a_model_of_another_width_is_refused_naming_the_setting(uri, model):
    add_missing_columns(uri, None, pa.schema([pa.field("embedding", pa.list_(pa.float16(), 16))]), "a 16-wide column")
    with pytest.raises(ValueError, match=r"width 16 .*width 32\..*KINETICS_EMBEDDING_MODEL_ID"):
        _run(uri, ClipEmbeddingsStage(model=model))
    assert lance.dataset(uri).to_table(columns=["embedding"])["embedding"].null_count == 6  # nothing written


def test_settings_name_the_model_and_sampling(model):
    settings = ClipEmbeddingsStage(model=model, sampling=FrameSampling("count", count=4)).settings()
    assert settings["model_id"] == TINY_SIGLIP_ID
    assert settings["revision"] == "local"
    assert settings["sampling"] == "count=4"
    assert settings["pooling"] == "mean"
