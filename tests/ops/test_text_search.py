"""`kinetics search TEXT` with the clip_embeddings model: the tiny random SigLIP embeds a real shard's
clips through the stage, and the text is embedded by the model the table records (its weights from
KINETICS_EMBEDDING_MODEL_PATH), loudly flagged as random weights."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from kinetics_assets.embed import text_query_vector
from kinetics_assets.embed.model import EmbeddingModelConfig  # torch at collection, not in the test
from kinetics_assets.media.decode import frame_timestamps
from kinetics_assets.ops.cli import main
from kinetics_assets.search import search_clips
from kinetics_assets.stages import InProcessExecutor, run_column_stage
from kinetics_assets.stages.embeddings import ClipEmbeddingsStage
from kinetics_assets.table import commit_shard, write_shard_fragments
from tests.harness.exotic_clips import exotic_clip_bytes, frame_pattern
from tests.harness.tiny_siglip import TINY_SIGLIP_ID, save_tiny_siglip_model


def _clip(offset: int) -> bytes:
    return exotic_clip_bytes(
        container_format="mp4",
        width=64,
        height=48,
        fps=10,
        frames=20,
        pattern=lambda i, w, h: frame_pattern(i + offset, w, h),
    )


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_search")
    folder = save_tiny_siglip_model(root / "tiny")
    model = EmbeddingModelConfig(model_id=TINY_SIGLIP_ID, local_path=folder, device="cpu", batch_size=5)
    uri = str(root / "t.lance")
    clips = {f"s1-{i}": _clip(30 * i) for i in range(4)}
    rows = [
        {
            "video_id": v,
            "shard": "s1",
            "status": "ok",
            "label": f"l{i % 2}",
            "video": data,
            "duration_s": 2.0,
            "frames": len(frame_timestamps(data)),
            "processed_at": datetime.now(UTC),
        }
        for i, (v, data) in enumerate(clips.items())
    ]
    commit_shard(uri, "s1", write_shard_fragments(rows, uri))
    list(
        run_column_stage(
            ClipEmbeddingsStage(model=model, pretrained=False),
            ["s1"],
            lance_uri=uri,
            storage_options=None,
            executor=InProcessExecutor(),
            log=lambda _: None,
        )
    )
    return uri, folder, model


def test_text_search_embeds_the_query_with_the_tables_model(embedded, capsys, monkeypatch):
    uri, folder, model = embedded
    monkeypatch.setenv("KINETICS_EMBEDDING_MODEL_PATH", str(folder))
    assert main(["search", "people playing guitar", "--top", "3", "--label", "l1", "--json", "--lance-uri", uri]) == 0
    captured = capsys.readouterr()
    assert "RANDOMLY INITIALISED" in captured.err
    hits = json.loads(captured.out)
    expected = search_clips(uri, vector=text_query_vector("people playing guitar", config=model), top=3, labels=["l1"])
    assert [h["video_id"] for h in hits] == [h.video_id for h in expected]
    assert {h["label"] for h in hits} == {"l1"}
    assert len(hits) == 2
    assert np.isfinite([h["score"] for h in hits]).all()
