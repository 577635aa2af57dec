"""`raw_archives`: each shard's archive (or list of videos) downloaded, verified and indexed."""

from collections.abc import Iterator

import dagster as dg

from kinetics_assets.defs.engine_config import RunConfig, adding_engine_fields, engine_fields, to_engine
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.defs.recording import ShardRecord, finish_run, raw_record
from kinetics_assets.ingest.download import DownloadConfig
from kinetics_assets.limits import Limits
from kinetics_assets.steps.checks import RAW_CHECKS
from kinetics_assets.steps.failures import ShardFailure
from resources import StorageResource


@adding_engine_fields(
    engine_fields(DownloadConfig, "connect_timeout_s", "read_timeout_s", "max_attempts"),
    engine_fields(Limits, "max_archive_bytes", "max_shard_read_bytes"),
)
class DownloadRunConfig(RunConfig):
    """How the run's shards are downloaded; null switches a limit off."""

    max_concurrent_downloads: int = 4
    """Shards of a run downloaded at once (one stream each)."""

    def to_download_config(self) -> DownloadConfig:
        return to_engine(self, DownloadConfig, max_bytes=self.to_limits().max_archive_bytes)


def build_raw_archives(shard_assets: ShardAssets) -> dg.AssetsDefinition:
    @shard_assets.asset(
        checks=RAW_CHECKS,
        kinds={"python", "aiohttp"},
        description="Each shard's archive (or its list of videos) downloaded, verified and indexed.",
    )
    def raw_archives(
        context: dg.AssetExecutionContext, config: DownloadRunConfig, storage: StorageResource
    ) -> Iterator:
        from kinetics_assets.steps.raw import fetch_shards  # aiohttp: loaded by the step

        shards = [shard_assets.shard(key) for key in context.partition_keys]
        last_logged: dict[str, int] = {}

        def progress(shard: str, done: int, total: int | None) -> None:
            if total and done - last_logged.get(shard, 0) >= max(total // 10, 1):
                last_logged[shard] = done
                context.log.info("shard %s: %.1f of %.1f MB", shard, done / 1e6, total / 1e6)

        context.log.info("fetching %d shard(s), %d at once", len(shards), config.max_concurrent_downloads)
        failed: dict[str, str] = {}
        done: list[ShardRecord] = []
        results = fetch_shards(
            shards,
            storage.data_root,
            config.to_download_config(),
            parallel=config.max_concurrent_downloads,
            progress=progress,
            storage_options=storage.storage_options,
            cache_dir=storage.local_cache,
            max_read_bytes=config.to_limits().max_shard_read_bytes,
        )
        for raw in results:
            if isinstance(raw, ShardFailure):
                context.log.error(raw.error)
                failed[raw.shard] = raw.error
                continue
            done.append(raw_record(raw, shard_assets.shard(raw.shard)))
            context.log.info("shard %s: verified (%d of %d shards)", raw.shard, len(done) + len(failed), len(shards))
        yield from finish_run(context, checks=RAW_CHECKS, done=done, failed=failed)

    return raw_archives
