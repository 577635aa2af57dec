"""The shard assets, their resources and the run executor, built from the settings in the
environment when Dagster loads the definitions (in the webserver, the daemon and each run), not
when a module is imported. `qa_report` is not partitioned and is collected from its own module.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypedDict

import dagster as dg

from kinetics_assets.defs.clip_embeddings import build_clip_embeddings
from kinetics_assets.defs.clip_fingerprints import build_clip_fingerprints
from kinetics_assets.defs.depth_maps import build_depth_maps
from kinetics_assets.defs.frame_stats import build_frame_stats
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.defs.pool_wait import wait_idle_for_pool_slots
from kinetics_assets.defs.raw_archives import build_raw_archives
from kinetics_assets.defs.transcoded_videos import build_transcoded_videos
from kinetics_assets.defs.transcripts import build_transcripts
from kinetics_assets.settings import Settings
from resources import (
    ClipExecution,
    DepthModelResource,
    EmbeddingModelResource,
    InProcessExecution,
    RayResource,
    SpeechModelResource,
    StorageResource,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

PARTITIONED_ASSETS = (
    "raw_archives",
    "transcoded_videos",
    "depth_maps",
    "transcripts",
    "frame_stats",
    "clip_embeddings",
    "clip_fingerprints",
)
"""The shard assets the demo materializes, upstream first."""
TABLE_ASSETS = ("qa_report", "embedding_index", "near_duplicates")
"""The unpartitioned assets over the whole table, which the demo materializes after the shard's run:
each reads every shard, so a shard's run that included one would also run it, once per shard."""


def _env_str(env: Mapping[str, str], name: str) -> dg.EnvVar | None:
    """`dg.EnvVar(name)` when the variable is set: the run reads its value and the UI shows its
    name; None (the resource's default) when it is not.
    """
    return dg.EnvVar(name) if env.get(name) else None


class _ModelFields(TypedDict, total=False):
    """A model resource's weights settings, each a `dg.EnvVar` (a str) naming its variable."""

    model_id: str
    revision: str
    local_path: str


class _SpeechFields(_ModelFields, total=False):
    language: str


def _model_fields(env: Mapping[str, str], prefix: str) -> _ModelFields:
    """The model resource's weights settings that `<prefix>_*` variables set."""
    fields: _ModelFields = {}
    if model_id := _env_str(env, f"{prefix}_MODEL_ID"):
        fields["model_id"] = model_id
    if revision := _env_str(env, f"{prefix}_MODEL_REVISION"):
        fields["revision"] = revision
    if local_path := _env_str(env, f"{prefix}_MODEL_PATH"):
        fields["local_path"] = local_path
    return fields


def _speech_fields(env: Mapping[str, str]) -> _SpeechFields:
    fields = _SpeechFields(**_model_fields(env, "KINETICS_SPEECH"))
    if language := _env_str(env, "KINETICS_SPEECH_LANGUAGE"):
        fields["language"] = language
    return fields


def execution_from_env(settings: Settings, env: Mapping[str, str]) -> ClipExecution:
    """Ray (`KINETICS_EXECUTION=ray`, the default) or this process (`in_process`)."""
    if settings.execution == "in_process":
        return InProcessExecution()
    # RAY_ADDRESS is read by the resource itself, when a step sets it up.
    cpus = env.get("KINETICS_RAY_NUM_CPUS")
    return RayResource(num_cpus=dg.EnvVar.int("KINETICS_RAY_NUM_CPUS") if cpus else None)


def resources_from_env(settings: Settings, env: Mapping[str, str]) -> dict[str, dg.ConfigurableResource]:
    """The resources of the code location. Settings that only shape how a run executes are read
    through `dg.EnvVar` where the value is taken as is.
    """
    return {
        "storage": StorageResource.from_settings(settings),
        "execution": execution_from_env(settings, env),
        "depth_model": DepthModelResource(
            **_model_fields(env, "KINETICS_DEPTH"),
            allow_random_weights=env.get("KINETICS_DEPTH_ALLOW_RANDOM_WEIGHTS") == "1",
        ),
        "speech_model": SpeechModelResource(
            **_speech_fields(env),
            allow_random_weights=env.get("KINETICS_SPEECH_ALLOW_RANDOM_WEIGHTS") == "1",
        ),
        "embedding_model": EmbeddingModelResource(
            **_model_fields(env, "KINETICS_EMBEDDING"),
            allow_random_weights=env.get("KINETICS_EMBEDDING_ALLOW_RANDOM_WEIGHTS") == "1",
        ),
    }


def shard_definitions(settings: Settings, env: Mapping[str, str]) -> dg.Definitions:
    """The shard assets for `settings`, with their resources and the run executor."""
    shard_assets = ShardAssets.from_settings(settings)
    assets = [
        build_raw_archives(shard_assets),
        build_transcoded_videos(shard_assets),
        build_depth_maps(shard_assets),
        build_transcripts(shard_assets),
        build_frame_stats(shard_assets),
        build_clip_embeddings(shard_assets),
        build_clip_fingerprints(shard_assets),
    ]
    # A run's steps form a chain (download -> transcode -> depth and transcripts) with little to run beside
    # each other, so by default they run in the run's own process: no process start, no second Ray
    # connection and no second import of torch per step (BENCHMARKS.md, "Whole-split backfill").
    executor = dg.in_process_executor if settings.run_executor == "in_process" else dg.multiprocess_executor
    return dg.Definitions(assets=assets, resources=resources_from_env(settings, env), executor=executor)


@dg.definitions
def kinetics_pipeline() -> dg.Definitions:
    # A step waiting for its pool's slot would otherwise poll without pause (defs/pool_wait.py).
    wait_idle_for_pool_slots()
    return shard_definitions(Settings.from_env(), os.environ)
