"""`transcripts`: what is said in every ok video (speech gate, then Whisper), as transcript columns of
the same table, on Ray or in process.
"""

import time
from collections.abc import Iterator

import dagster as dg

from kinetics_assets.defs.engine_config import RunConfig, adding_engine_fields, engine_fields, to_engine
from kinetics_assets.defs.model_actors import model_for_step
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.defs.recording import collect, finish_run, transcript_record
from kinetics_assets.distributed.options import RayTranscriptOptions
from kinetics_assets.steps.checks import TRANSCRIPT_CHECKS
from resources import ClipExecution, SpeechModelResource, StorageResource


@adding_engine_fields(
    engine_fields(RayTranscriptOptions, "max_in_flight"),
)
class TranscriptRunConfig(RunConfig):
    """How the run goes; the model (id, language, batch size, device) is the `speech_model` resource."""

    force: bool = False
    """Transcribe again shards whose ok videos all have a transcript (ok, no_audio or no_speech) from
    the same model and revision, made after the video (by default they are skipped)."""

    def to_options(
        self, *, actors: int = 1, actor_num_gpus: float | None = None, actor_num_cpus: float = 0.0
    ) -> RayTranscriptOptions:
        return to_engine(
            self, RayTranscriptOptions, actors=actors, actor_num_gpus=actor_num_gpus, actor_num_cpus=actor_num_cpus
        )


def build_transcripts(shard_assets: ShardAssets) -> dg.AssetsDefinition:
    @shard_assets.asset(
        checks=TRANSCRIPT_CHECKS,
        deps=["transcoded_videos"],
        kinds={"pytorch", "lance"},
        pool="transcripts",
        uses_ray=True,
        description="What is said in every ok video (Silero VAD, then Whisper), as transcript columns of the same table.",
    )
    def transcripts(
        context: dg.AssetExecutionContext,
        config: TranscriptRunConfig,
        storage: StorageResource,
        execution: ClipExecution,
        speech_model: SpeechModelResource,
    ) -> Iterator:
        from kinetics_assets.steps.transcripts import transcript_shards  # Lance and Whisper: loaded by the step

        shards = [shard_assets.shard(key).key for key in context.partition_keys]
        model_config, pretrained, layout = model_for_step(
            context,
            speech_model,
            storage.local_root / "models" / "random-whisper",
            execution=execution,
            pool="transcripts",
            what="transcripts",
            column="transcript_pretrained",
        )
        results = transcript_shards(
            shards,
            lance_uri=storage.lance_uri,
            storage_options=storage.storage_options,
            transcriber=execution.transcriber(model_config, config.to_options(**layout)),
            pretrained=pretrained,
            skip_committed=not config.force,
            log=context.log.info,
        )
        started = time.monotonic()
        done, failed = collect(
            context,
            results,
            lambda result: transcript_record(result, lance_uri=storage.lance_uri, pretrained=pretrained),
        )
        context.log.info("transcripts step: %.1f s for %d shard(s)", time.monotonic() - started, len(shards))
        yield from finish_run(context, checks=TRANSCRIPT_CHECKS, done=done, failed=failed)

    return transcripts
