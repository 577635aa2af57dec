"""`transcoded_videos`: every clip of the shard as 360p H.264 in the Lance table, on Ray or in process."""

from collections.abc import Iterator

import dagster as dg

from kinetics_assets.defs.engine_config import RunConfig, adding_engine_fields, engine_fields, to_engine
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.defs.recording import ShardRecord, finish_run, transcode_record
from kinetics_assets.limits import Limits
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.steps.checks import TRANSCODE_CHECKS
from kinetics_assets.steps.failures import ShardFailure
from resources import ClipExecution, StorageResource


@adding_engine_fields(
    engine_fields(TranscodeConfig, "preset", "crf", "short_side", "keyframe_interval_s", "timeout_s"),
    engine_fields(
        Limits, "max_member_bytes", "max_shard_read_bytes", "max_pixels_per_frame", "max_duration_s", "max_frames"
    ),
)
class TranscodeRunConfig(RunConfig):
    """Encoder settings, limits against hostile input (null switches one off) and how the run goes."""

    retry_failed_only: bool = False
    """Keep the shard's ok rows and transcode only failed or missing clips."""
    force: bool = False
    """Transcode again shards already committed from the same archive with the same settings
    (by default they are skipped)."""
    max_failure_rate: float = 0.2
    """Blocking check: the share of failed clips a shard may have."""
    max_in_flight: int | None = None
    """Clips submitted to Ray at once, across the run's shards; default twice the cluster's CPUs."""

    def to_transcode_config(self) -> TranscodeConfig:
        return to_engine(self, TranscodeConfig)


def build_transcoded_videos(shard_assets: ShardAssets) -> dg.AssetsDefinition:
    settings = shard_assets.settings

    @shard_assets.asset(
        checks=TRANSCODE_CHECKS,
        deps=["raw_archives"],
        kinds={"lance"},
        uses_ray=True,
        description="Every clip of the shard as 360p H.264 in the Lance table, with metadata, label and status.",
    )
    def transcoded_videos(
        context: dg.AssetExecutionContext,
        config: TranscodeRunConfig,
        storage: StorageResource,
        execution: ClipExecution,
    ) -> Iterator:
        # Lance and the archive readers: loaded by the step, not the code location.
        from kinetics_assets.steps.transcode import transcode_shards
        from kinetics_assets.steps.transcode_inputs import transcode_inputs

        shards = [shard_assets.shard(key) for key in context.partition_keys]
        options = storage.storage_options
        inputs = transcode_inputs(
            shards,
            data_root=storage.data_root,
            storage_options=options,
            cache_dir=storage.local_cache,
            local_root=storage.local_root,
            annotations_url=settings.annotations_url,
            release=settings.release,
        )
        transcode_config = config.to_transcode_config()
        executor, in_flight = execution.transcode_executor(max_in_flight=config.max_in_flight)
        sources, expected = inputs.sources, inputs.expected_clips
        context.log.info(
            "transcoding %d shard(s) (%s clips) through one window of %d clips",
            len(shards),
            expected if expected is not None else "unknown",
            in_flight,
        )
        results = transcode_shards(
            sources,
            lance_uri=storage.lance_uri,
            storage_options=options,
            annotations=inputs.annotations,
            config=transcode_config,
            retry_failed_only=config.retry_failed_only,
            skip_committed=not config.force,
            executor=executor,
            properties={"dagster_run_id": context.run.run_id},
            log=context.log.info,
            limits=config.to_limits(),
            expected_clips=expected,
            max_failure_rate=config.max_failure_rate,
        )
        failed: dict[str, str] = {}
        done: list[ShardRecord] = []
        upstream = {source.shard.key: source.sha256 or "" for source in sources}
        for result in results:
            if isinstance(result, ShardFailure):
                failed[result.shard] = result.error
                continue
            done.append(
                transcode_record(
                    result, lance_uri=storage.lance_uri, config=transcode_config, upstream_sha=upstream[result.shard]
                )
            )
        yield from finish_run(context, checks=TRANSCODE_CHECKS, done=done, failed=failed)

    return transcoded_videos
