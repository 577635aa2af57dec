"""Embedding model: loading a saved folder, frame and text vectors, clip pooling, the query helper.

The model is a tiny random SigLIP saved with `save_pretrained` (tests/harness/tiny_siglip.py), its
tokenizer built locally, loaded through the same `from_pretrained` path as production. No network:
`local_path` is read, the Hub is never asked.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kinetics_assets.embed import text_query_vector
from kinetics_assets.embed.model import (
    ClipEmbedder,
    EmbeddingModelConfig,
    EmbeddingModelUnavailable,
    check_weights_available,
    embedding_width,
    normalise,
    pool_clip,
    width_of,
)
from kinetics_assets.hub import has_random_weights
from tests.harness.clips import frame_pattern
from tests.harness.tiny_siglip import TINY_SIGLIP_ID, save_tiny_siglip_model, siglip2_base_config, tiny_siglip_config

WIDTH = 32  # the tiny model's vectors


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_siglip_model(tmp_path_factory.mktemp("tiny_siglip"))


@pytest.fixture(scope="module")
def config(tiny_folder) -> EmbeddingModelConfig:
    return EmbeddingModelConfig(model_id=TINY_SIGLIP_ID, local_path=tiny_folder, device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def embedder(config) -> ClipEmbedder:
    return ClipEmbedder(config)


def pattern_frames(n: int, height: int = 36, width: int = 64, start: int = 0) -> np.ndarray:
    return np.stack([frame_pattern(start + i * 5, width, height) for i in range(n)])


def test_loads_the_saved_folder_offline(embedder, tiny_folder):
    assert embedder.model_id == TINY_SIGLIP_ID
    assert embedder.revision == "local"
    assert embedder.width == WIDTH == embedding_width(embedder.config)
    assert embedder.dtype == torch.float32  # "auto" on cpu
    assert type(embedder.model).__name__ == "SiglipModel"
    assert has_random_weights(tiny_folder)
    saved = json.loads((tiny_folder / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "GemmaTokenizer"  # built here, not downloaded


def test_frames_give_unit_vectors_batch_independent(embedder):
    frames = pattern_frames(7)
    vectors = embedder.embed_frames(frames)
    assert vectors.shape == (7, WIDTH)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # 7 frames in batches of 3 give what each frame gives alone.
    one_by_one = np.concatenate([embedder.embed_frames(frames[i : i + 1]) for i in range(7)])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    # Different pictures, different vectors.
    assert float(vectors[0] @ vectors[6]) < 0.9999


def test_frames_of_any_size_go_in(embedder):
    wide, tall = embedder.embed_frames(pattern_frames(2, 36, 64)), embedder.embed_frames(pattern_frames(2, 90, 40))
    assert wide.shape == tall.shape == (2, WIDTH)


def test_frames_must_be_uint8_rgb(embedder):
    with pytest.raises(ValueError, match="uint8 RGB"):
        embedder.embed_frames(np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        embedder.embed_frames(np.zeros((2, 8, 8, 3), dtype=np.float32))


def test_texts_give_unit_vectors_padded_to_the_model_length(embedder):
    texts = ["People playing guitar", "a dog on a skateboard", "x", "people playing guitar"]
    vectors = embedder.embed_texts(texts)
    assert vectors.shape == (4, WIDTH)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[3], atol=1e-6)  # lower-cased, as SigLIP 2 was trained
    assert float(vectors[0] @ vectors[1]) < 0.9999
    tokens = embedder.processor.tokenizer(["x"], padding="max_length", max_length=embedder.text_length)
    assert tokens["input_ids"][0][-1] == 0  # padded on the right, with <pad>


def test_text_query_vector_is_the_text_tower(config, embedder):
    query = text_query_vector("People playing guitar", config=config)
    assert query.shape == (WIDTH,)
    assert query.dtype == np.float32
    np.testing.assert_allclose(query, embedder.embed_texts(["people playing guitar"])[0], atol=1e-6)


def test_pool_clip_is_the_renormalised_mean():
    vectors = normalise(np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]]))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0)
    pooled = pool_clip(vectors)
    mean = vectors.mean(axis=0)
    np.testing.assert_allclose(pooled, mean / np.linalg.norm(mean), rtol=1e-6)
    np.testing.assert_allclose(pool_clip(vectors[:1]), vectors[0])
    with pytest.raises(ValueError, match="frame vectors"):
        pool_clip(np.zeros((0, 2)))
    assert not np.isnan(normalise(np.zeros((1, 3)))).any()


def test_width_of_the_default_architecture_and_mismatched_towers():
    assert width_of(siglip2_base_config()) == 768
    odd = tiny_siglip_config()
    odd.text_config.projection_size = 16
    with pytest.raises(ValueError, match="image vectors are 32 wide, its text vectors 16"):
        width_of(odd)


def test_missing_folder_names_the_setting(tmp_path):
    config = EmbeddingModelConfig(local_path=tmp_path / "nothing")
    with pytest.raises(EmbeddingModelUnavailable, match=r"EmbeddingModelConfig\.local_path"):
        check_weights_available(config)
    with pytest.raises(EmbeddingModelUnavailable, match="google/siglip2-base-patch16-224"):
        ClipEmbedder(config)


def test_a_naflex_checkpoint_works_through_the_same_code(tmp_path):
    """SigLIP 2's NaFlex model class: its processor's patch mask and shapes go to the model as they come."""
    from transformers import Siglip2Config, Siglip2ImageProcessorPil, Siglip2Model, Siglip2Processor

    from tests.harness.tiny_siglip import build_tiny_siglip_tokenizer

    tiny = tiny_siglip_config()
    config = Siglip2Config(
        text_config=tiny.text_config.to_dict(),
        vision_config={**tiny.vision_config.to_dict(), "num_patches": 16},
    )
    Siglip2Model(config).save_pretrained(tmp_path)
    processor = Siglip2Processor(
        image_processor=Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16),
        tokenizer=build_tiny_siglip_tokenizer(),
    )
    processor.save_pretrained(tmp_path)
    embedder = ClipEmbedder(EmbeddingModelConfig(local_path=tmp_path, device="cpu", batch_size=3))
    assert type(embedder.model).__name__ == "Siglip2Model"
    frames = pattern_frames(5)
    assert set(embedder.preprocess(frames)) == {"pixel_values", "pixel_attention_mask", "spatial_shapes"}
    vectors = embedder.embed_frames(frames)
    assert vectors.shape == (5, WIDTH)
    one_by_one = np.concatenate([embedder.embed_frames(frames[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    assert embedder.embed_texts(["a dog"]).shape == (1, WIDTH)
