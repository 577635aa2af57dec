"""`transcripts`: what is said in every ok video (speech gate, then Whisper), as transcript columns of
the same table, on Ray."""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from kinetics_assets.defs.engine_config import RunConfig, engine_fields, to_engine, with_engine_fields
from kinetics_assets.defs.model_actors import model_for_step
from kinetics_assets.defs.partitions import SHARDS, shard_asset
from kinetics_assets.defs.recording import collect, finish_run, transcript_record
from kinetics_assets.defs.transcoded_videos import transcoded_videos
from kinetics_assets.distributed.transcripts import RayTranscriber, RayTranscriptOptions
from kinetics_assets.ingest.shards import get_shard
from kinetics_assets.steps.checks import TRANSCRIPT_CHECKS
from kinetics_assets.steps.transcripts import transcript_shards
from resources import RayResource, SpeechModelResource, StorageResource


class _TranscriptSettings(RunConfig):
    """How the run goes; the model (id, language, batch size, device) is the `speech_model` resource."""

    force: bool = False
    """Transcribe again shards whose ok videos all have a transcript (ok, no_audio or no_speech) from
    the same model and revision, made after the video (by default they are skipped)."""

    def to_options(self, **actor_layout: Any) -> RayTranscriptOptions:
        return to_engine(self, RayTranscriptOptions, **actor_layout)


TranscriptRunConfig = with_engine_fields(
    "TranscriptRunConfig",
    _TranscriptSettings,
    engine_fields(RayTranscriptOptions, "max_in_flight"),
)


@shard_asset(
    checks=TRANSCRIPT_CHECKS,
    deps=[transcoded_videos],
    kinds={"ray", "pytorch", "lance"},
    pool="transcripts",
    description="What is said in every ok video (Silero VAD, then Whisper), as transcript columns of the same table.",
)
def transcripts(
    context: dg.AssetExecutionContext,
    config: TranscriptRunConfig,
    storage: StorageResource,
    ray_cluster: RayResource,
    speech_model: SpeechModelResource,
) -> Iterator:
    shards = [get_shard(SHARDS, key).key for key in context.partition_keys]
    model_config, pretrained, layout = model_for_step(
        context,
        speech_model,
        storage.local_root / "models" / "random-whisper",
        pool="transcripts",
        what="transcripts",
        column="transcript_pretrained",
    )
    results = transcript_shards(
        shards,
        lance_uri=storage.lance_uri,
        storage_options=storage.storage_options,
        transcriber=RayTranscriber(model_config, options=config.to_options(**layout)),
        pretrained=pretrained,
        skip_committed=not config.force,
        log=context.log.info,
    )
    started = time.monotonic()
    done, failed = collect(
        context, results, lambda result: transcript_record(result, lance_uri=storage.lance_uri, pretrained=pretrained)
    )
    context.log.info(f"transcripts step: {time.monotonic() - started:.1f} s for {len(shards)} shard(s)")
    yield from finish_run(context, checks=TRANSCRIPT_CHECKS, done=done, failed=failed)
