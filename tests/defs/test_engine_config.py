"""The run configs: each engine field they expose is the engine's own (type and default), and reaches
the engine's value through the one conversion method."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal, get_args, get_origin

import pytest

from kinetics_assets.defs.depth_maps import DepthRunConfig
from kinetics_assets.defs.engine_config import RunConfig, engine_fields, with_engine_fields
from kinetics_assets.defs.raw_archives import DownloadRunConfig
from kinetics_assets.defs.transcoded_videos import TranscodeRunConfig
from kinetics_assets.ingest.download import DownloadConfig
from kinetics_assets.limits import DEFAULT_LIMITS, Limits
from kinetics_assets.media.depth_codec import DEPTH_CODECS, DepthEncoding
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.media.transcode import TranscodeConfig

if TYPE_CHECKING:
    import dagster as dg

# Each run config, and how it turns into each engine value it feeds.
CONVERSIONS = [
    (DownloadRunConfig, DownloadConfig, lambda c: c.to_download_config()),
    (DownloadRunConfig, Limits, lambda c: c.to_limits()),
    (TranscodeRunConfig, TranscodeConfig, lambda c: c.to_transcode_config()),
    (TranscodeRunConfig, Limits, lambda c: c.to_limits()),
    (DepthRunConfig, DepthEncoding, lambda c: c.to_encoding()),
]
IDS = [f"{config.__name__}-{engine.__name__}" for config, engine, _ in CONVERSIONS]


def _shared(config: type[dg.Config], engine: type) -> list[str]:
    return [f.name for f in dataclasses.fields(engine) if f.name in config.model_fields]


def _another(value, annotation):
    """A valid value other than `value` for a field of this type."""
    if get_origin(annotation) is Literal:
        return next(option for option in get_args(annotation) if option != value)
    if isinstance(value, bool):
        return not value
    return value * 2 if value else 1


@pytest.mark.parametrize(("config", "engine", "convert"), CONVERSIONS, ids=IDS)
def test_defaults_are_the_engines(config, engine, convert):
    assert _shared(config, engine), "the run config exposes none of the engine's fields"
    for name in _shared(config, engine):
        assert config.model_fields[name].default == getattr(engine(), name), name
    assert convert(config()) == engine()


@pytest.mark.parametrize(("config", "engine", "convert"), CONVERSIONS, ids=IDS)
def test_every_exposed_field_reaches_the_engine(config, engine, convert):
    for name in _shared(config, engine):
        field = config.model_fields[name]
        value = _another(field.default, field.annotation)
        assert getattr(convert(config(**{name: value})), name) == value, name


def test_every_limit_is_exposed_by_some_run_config():
    exposed = {name for config in (DownloadRunConfig, TranscodeRunConfig) for name in _shared(config, Limits)}
    assert exposed == {f.name for f in dataclasses.fields(Limits)}
    assert DownloadRunConfig(max_archive_bytes=5).to_download_config().max_bytes == 5
    assert TranscodeRunConfig(max_frames=None).to_limits() == dataclasses.replace(DEFAULT_LIMITS, max_frames=None)


def test_string_enums_are_literal_types_that_dagster_enforces():
    assert get_args(DepthRunConfig.model_fields["codec"].annotation) == DEPTH_CODECS
    assert "ultrafast" in get_args(TranscodeRunConfig.model_fields["preset"].annotation)
    with pytest.raises(ValueError, match="preset"):
        TranscodeRunConfig(preset="fastest")
    with pytest.raises(ValueError, match="codec"):
        DepthRunConfig(codec="h265")


def test_sampling_and_the_run_configs_own_fields():
    assert DepthRunConfig().to_sampling() == FrameSampling()
    assert DepthRunConfig(sampling="fps=5").to_sampling() == FrameSampling("fps", fps=5.0)
    from kinetics_assets.defs.depth_maps import DEPTH_MAPS
    from kinetics_assets.depth.model import DepthModelConfig

    stage = DEPTH_MAPS.stage(DepthRunConfig(task_num_cpus=2, crf=20, sampling="count=3"), DepthModelConfig(), False)
    assert (stage.resources.cpus, stage.encoding.crf, stage.sampling.count, stage.pretrained) == (2, 20, 3, False)
    assert (TranscodeRunConfig().max_failure_rate, DownloadRunConfig().max_concurrent_downloads) == (0.2, 4)


def test_a_field_is_declared_once():
    class Own(RunConfig):
        crf: int = 1

    with pytest.raises(TypeError, match="crf"):
        with_engine_fields("Twice", Own, engine_fields(TranscodeConfig, "crf"))
    with pytest.raises(TypeError, match="no_such_field"):
        engine_fields(TranscodeConfig, "no_such_field")
