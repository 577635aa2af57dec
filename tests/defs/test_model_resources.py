"""The model resources: which weights a step loads, and the demo's random stand-in when there are none."""

from __future__ import annotations

import pytest

from kinetics_assets.depth.model import DepthModelUnavailable
from kinetics_assets.embed.model import EmbeddingModelUnavailable
from kinetics_assets.hub import has_random_weights
from kinetics_assets.speech.model import DEFAULT_MODEL_ID, SpeechModelConfig, SpeechModelUnavailable
from resources import DepthModelResource, EmbeddingModelResource, SpeechModelResource
from tests.harness.tiny_whisper import save_tiny_whisper_model

RESOURCES = [
    (SpeechModelResource, SpeechModelUnavailable, "Speech model"),
    (DepthModelResource, DepthModelUnavailable, "Depth model"),
    (EmbeddingModelResource, EmbeddingModelUnavailable, "Embedding model"),
]


@pytest.mark.parametrize(("resource", "unavailable", "kind"), RESOURCES)
def test_missing_weights_raise_naming_the_model(tmp_path, resource, unavailable, kind):
    missing = tmp_path / "no-such-model"
    with pytest.raises(unavailable, match=rf"{kind} .*no-such-model"):
        resource(local_path=str(missing)).resolve_model(tmp_path / "fallback")
    assert not (tmp_path / "fallback").exists()  # nothing stands in unless allowed


@pytest.mark.parametrize(("resource", "unavailable", "kind"), RESOURCES)
def test_allow_random_weights_gives_the_stand_in_not_pretrained(tmp_path, resource, unavailable, kind):
    model = resource(local_path=str(tmp_path / "no-such-model"), revision="abc", allow_random_weights=True)
    config, pretrained = model.resolve_model(tmp_path / "fallback")
    assert pretrained is False
    assert config.model_id.startswith("RANDOM-WEIGHTS stand-in for ")
    assert model.model_id in config.model_id
    assert config.local_path == str(tmp_path / "fallback")
    assert has_random_weights(config.local_path)
    assert config.revision is None
    assert config.cache_dir is None


def test_speech_resource_builds_the_engine_config(tmp_path):
    folder = save_tiny_whisper_model(tmp_path / "tiny")
    model = SpeechModelResource(local_path=str(folder), language="en", batch_size=3, device="cpu")
    assert model.model_id == DEFAULT_MODEL_ID
    config, pretrained = model.resolve_model(tmp_path / "fallback")
    # The tiny model carries the random-weights marker: never recorded as pre-trained.
    assert pretrained is False
    assert config.model_id == f"RANDOM-WEIGHTS model at {folder}"
    assert isinstance(config, SpeechModelConfig)
    assert (config.language, config.batch_size, config.device, config.local_path) == ("en", 3, "cpu", str(folder))
