"""The `kinetics_assets` code location."""

from __future__ import annotations

import os

import dagster as dg

from kinetics_assets.defs.depth_maps import depth_maps
from kinetics_assets.defs.partitions import SETTINGS
from kinetics_assets.defs.pool_wait import wait_idle_for_pool_slots
from kinetics_assets.defs.qa_report import qa_report
from kinetics_assets.defs.raw_archives import raw_archives
from kinetics_assets.defs.transcoded_videos import transcoded_videos
from kinetics_assets.defs.transcripts import transcripts
from kinetics_assets.depth.model import DEFAULT_MODEL_ID as DEFAULT_DEPTH_MODEL_ID
from kinetics_assets.speech.model import DEFAULT_MODEL_ID as DEFAULT_SPEECH_MODEL_ID
from resources import DepthModelResource, RayResource, SpeechModelResource, StorageResource

__all__ = ["ASSETS", "PARTITIONED_ASSETS", "RESOURCES", "SETTINGS", "defs"]


def ray_resource_from_env() -> RayResource:
    cpus = os.environ.get("KINETICS_RAY_NUM_CPUS")
    return RayResource(
        address=os.environ.get("RAY_ADDRESS") or None,
        num_cpus=int(cpus) if cpus else None,
    )


PARTITIONED_ASSETS = [raw_archives, transcoded_videos, depth_maps, transcripts]
# qa_report reads every shard: materialize it on its own (a shard's run that includes it would
# also run it, once per shard).
ASSETS = [*PARTITIONED_ASSETS, qa_report]
RESOURCES = {
    "storage": StorageResource.from_settings(SETTINGS),
    "ray_cluster": ray_resource_from_env(),
    "depth_model": DepthModelResource(
        model_id=os.environ.get("KINETICS_DEPTH_MODEL_ID") or DEFAULT_DEPTH_MODEL_ID,
        revision=os.environ.get("KINETICS_DEPTH_MODEL_REVISION") or None,
        local_path=os.environ.get("KINETICS_DEPTH_MODEL_PATH") or None,
        allow_random_weights=os.environ.get("KINETICS_DEPTH_ALLOW_RANDOM_WEIGHTS") == "1",
    ),
    "speech_model": SpeechModelResource(
        model_id=os.environ.get("KINETICS_SPEECH_MODEL_ID") or DEFAULT_SPEECH_MODEL_ID,
        revision=os.environ.get("KINETICS_SPEECH_MODEL_REVISION") or None,
        local_path=os.environ.get("KINETICS_SPEECH_MODEL_PATH") or None,
        language=os.environ.get("KINETICS_SPEECH_LANGUAGE") or None,
        allow_random_weights=os.environ.get("KINETICS_SPEECH_ALLOW_RANDOM_WEIGHTS") == "1",
    ),
}

# A run's steps form a chain (download -> transcode -> depth and transcripts) with little to run beside each other,
# so by default they run in the run's own process: no process start, no second Ray connection and
# no second import of torch per step (BENCHMARKS.md, "Whole-split backfill").
# A step waiting for its pool's slot would otherwise poll without pause (defs/pool_wait.py).
wait_idle_for_pool_slots()

EXECUTOR = dg.in_process_executor if SETTINGS.run_executor == "in_process" else dg.multiprocess_executor

defs = dg.Definitions(assets=ASSETS, resources=RESOURCES, executor=EXECUTOR)
