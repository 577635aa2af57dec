"""The partitioned assets and their checks. Each asset is a thin shell over a plain step function.

A run materializes one partition or a range of them (the backfill policy puts up to
`partitions_per_run` shards in one run). Every shard still commits on its own, and its
materialization and check results are recorded for its own partition as soon as it is done. A shard
that fails does not stop the others; the step then fails at the end naming exactly the failed
partitions, so a re-launch of the failed partitions redoes only those.
"""

import base64
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dagster as dg

from kinetics_assets.ingest.annotations import load_annotations
from kinetics_assets.media.depth_codec import DepthEncoding
from kinetics_assets.steps.depth import DepthStepResult, depth_shards
from kinetics_assets.ingest.download import DownloadConfig
from kinetics_assets.media.frames import FrameSampling
from kinetics_assets.limits import DEFAULT_LIMITS, Limits
from kinetics_assets.defs.partitions import SETTINGS, SHARDS, shard_partitions
from kinetics_assets.steps.raw import (
    RawShard,
    ShardFailure,
    fetch_annotations,
    fetch_shards,
    local_source,
    verified_sha256,
    verified_video_count,
)
from kinetics_assets.distributed.depth import RayDepthOptions
from kinetics_assets.distributed.transcode import RayTranscodeOptions
from kinetics_assets.ingest.shards import get_shard
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.steps.checks import DEPTH_CHECKS, RAW_CHECKS, TRANSCODE_CHECKS, CheckSpec, Verdicts
from kinetics_assets.steps.transcode import ShardSource, TranscodeStepResult, transcode_shards
from resources import DepthModelResource, RayResource, StorageResource

# Backfill policies are beta in Dagster 1.13; the behaviour relied on is tested in tests/test_backfill_runs.py.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
BACKFILL_POLICY = (
    dg.BackfillPolicy.single_run()
    if SETTINGS.partitions_per_run is None
    else dg.BackfillPolicy.multi_run(max_partitions_per_run=SETTINGS.partitions_per_run)
)


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


def _markdown_table(rows: list[dict], columns: list[str], limit: int = 50) -> str:
    if not rows:
        return "_none_"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:limit]:
        cells = [str(row.get(c, "")).replace("|", "\\|").replace("\n", " ")[:200] for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more not shown_")
    return "\n".join(lines)


def _specs(asset: str, checks: Sequence[CheckSpec]) -> list[dg.AssetCheckSpec]:
    # Partitioned checks record one result per shard in a run of many shards (a preview API in 1.13).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [dg.AssetCheckSpec(c.name, asset=asset, description=c.description or None, blocking=c.blocking,
                                  partitions_def=shard_partitions) for c in checks]


@dataclass(frozen=True)
class ShardRecord:
    """What one finished shard records for its partition: metadata and check verdicts."""

    partition: str
    metadata: dict
    verdicts: Verdicts


def _failed_blocking(checks: Sequence[CheckSpec], verdicts: Verdicts) -> list[str]:
    return [c.name for c in checks if c.blocking and c.name in verdicts and not verdicts[c.name].passed]


def _finish_run(context: dg.AssetExecutionContext, asset: str, checks: Sequence[CheckSpec], done: list[ShardRecord],
                failed: dict[str, str]) -> Iterator:
    """Every shard has been tried: record each finished shard for its own partition, then fail the
    step if any shard failed, naming each failed partition and why.

    With no failure, one MaterializeResult materializes every partition of the run, each with the
    metadata added for it, and the run's next steps go on. With failures, the finished partitions
    are materialized one by one and the step fails, so they stay materialized and only the failed
    ones show as failed (a step that fails skips the run's next steps, whatever partition)."""
    key = dg.AssetKey(asset)
    if not failed:
        for record in done:
            context.add_asset_metadata(record.metadata, partition_key=record.partition)
        yield dg.MaterializeResult()
    else:
        for record in done:
            yield dg.AssetMaterialization(asset_key=key, partition=record.partition, metadata=record.metadata)
    by_name = {c.name: c for c in checks}
    for record in done:
        for name, verdict in record.verdicts.items():
            check = by_name[name]
            yield dg.AssetCheckEvaluation(asset_key=key, check_name=name, passed=verdict.passed,
                                          metadata=_check_metadata(verdict.details),
                                          severity=dg.AssetCheckSeverity[check.severity.upper()],
                                          blocking=check.blocking, partition=record.partition)
    # The checks' own outputs, once per step (their results were recorded per partition above).
    for name, spec in context.assets_def.check_specs_by_output_name.items():
        if spec.key in context.selected_asset_check_keys:
            yield dg.Output(None, output_name=name)
    total = len(context.partition_keys)
    context.log.info(f"{asset}: {len(done)} of {total} partition(s) done, {len(failed)} failed")
    if failed:
        lines = "\n".join(f"- {partition}: {cause}" for partition, cause in sorted(failed.items()))
        raise dg.Failure(
            description=f"{asset}: {len(failed)} of {total} partition(s) failed; the others are committed "
                        f"and recorded. Re-launch the failed ones:\n{lines}",
            metadata={"failed_partitions": dg.MetadataValue.json(sorted(failed)),
                      "failures": dg.MetadataValue.md(_markdown_table(
                          [{"partition": k, "cause": v} for k, v in sorted(failed.items())], ["partition", "cause"]))},
            allow_retries=False,
        )


# ---------------------------------------------------------------------------------------------------
# raw_archives


class DownloadRunConfig(dg.Config):
    connect_timeout_s: float = 30.0
    read_timeout_s: float = 60.0
    max_attempts: int = 8
    max_concurrent_downloads: int = 4
    """Shards of a run downloaded at once (one stream each)."""
    max_archive_bytes: int | None = DEFAULT_LIMITS.max_archive_bytes
    """Largest archive (or video of a video list) accepted; null: no limit."""
    max_shard_read_bytes: int | None = DEFAULT_LIMITS.max_shard_read_bytes
    """Uncompressed bytes the archive's verification may read (a gzip bomb is refused); null: no limit."""


@dg.asset(
    partitions_def=shard_partitions,
    backfill_policy=BACKFILL_POLICY,
    check_specs=_specs("raw_archives", RAW_CHECKS),
    output_required=False,
    group_name="kinetics",
    kinds={"python", "aiohttp"},
    description="Each shard's archive (or its list of videos) downloaded, verified and indexed.",
)
def raw_archives(context: dg.AssetExecutionContext, config: DownloadRunConfig, storage: StorageResource) -> Iterator:
    shards = [get_shard(SHARDS, key) for key in context.partition_keys]
    download_config = DownloadConfig(
        connect_timeout_s=config.connect_timeout_s, read_timeout_s=config.read_timeout_s, max_attempts=config.max_attempts,
        max_bytes=Limits(max_archive_bytes=config.max_archive_bytes).max_archive_bytes,
    )
    last_logged: dict[str, int] = {}

    def progress(shard: str, done: int, total: int | None) -> None:
        if total and done - last_logged.get(shard, 0) >= max(total // 10, 1):
            last_logged[shard] = done
            context.log.info(f"shard {shard}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

    context.log.info(f"fetching {len(shards)} shard(s), {config.max_concurrent_downloads} at once")
    failed: dict[str, str] = {}
    done: list[ShardRecord] = []
    results = fetch_shards(shards, storage.data_root, download_config, parallel=config.max_concurrent_downloads,
                           progress=progress, storage_options=storage.storage_options, cache_dir=storage.local_cache,
                           max_read_bytes=config.max_shard_read_bytes)
    for raw in results:
        if isinstance(raw, ShardFailure):
            context.log.error(raw.error)
            failed[raw.shard] = raw.error
            continue
        done.append(_raw_record(raw, get_shard(SHARDS, raw.shard)))
        context.log.info(f"shard {raw.shard}: verified ({len(done) + len(failed)} of {len(shards)} shards)")
    yield from _finish_run(context, "raw_archives", RAW_CHECKS, done, failed)


def _raw_record(raw: RawShard, shard) -> ShardRecord:
    seconds = sum(d.seconds for d in raw.downloads)
    total_bytes = sum(d.bytes for d in raw.downloads)
    sha256 = raw.downloads[0].sha256 if shard.kind == "archive" else _combined_sha(raw.downloads)
    metadata = {
        "url": dg.MetadataValue.url(shard.url) if shard.url.startswith("http") else shard.url,
        "path": raw.location,
        "bytes": total_bytes,
        "sha256": sha256,
        "seconds": round(seconds, 3),
        "MB/s": round(total_bytes / 1e6 / seconds, 2) if seconds > 0 else 0.0,
        "attempts": sum(d.attempts for d in raw.downloads),
        "resumed_bytes": sum(d.resumed_bytes for d in raw.downloads),
        "skipped_verified_copy": all(d.skipped for d in raw.downloads),
        "members": len(raw.index.members),
        "video_members": len(raw.index.video_members),
        "junk_skipped": len(raw.index.junk),
        "unsafe_skipped": len(raw.index.unsafe),
        "failed_downloads": len(raw.failed),
        "failed_download_list": dg.MetadataValue.md(_markdown_table(raw.failed, ["name", "url", "error"])),
    }
    return ShardRecord(raw.shard, metadata, raw.checks(sha256=sha256))


def _combined_sha(downloads) -> str:
    import hashlib

    digest = hashlib.sha256()
    for d in sorted(downloads, key=lambda d: d.url):
        digest.update(f"{d.url} {d.sha256}\n".encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# transcoded_videos


class TranscodeRunConfig(dg.Config):
    preset: str = "veryfast"
    crf: int = 23
    short_side: int = 360
    keyframe_interval_s: float = 1.0
    timeout_s: float = 300.0
    retry_failed_only: bool = False
    """Keep the shard's ok rows and transcode only failed or missing clips."""
    force: bool = False
    """Transcode again shards already committed from the same archive with the same settings
    (by default they are skipped)."""
    max_failure_rate: float = 0.2
    """Blocking check: the share of failed clips a shard may have."""
    max_in_flight: int | None = None
    """Clips submitted to Ray at once, across the run's shards; default twice the cluster's CPUs."""
    # Limits against hostile input (kinetics_assets.limits); null switches one off.
    max_member_bytes: int | None = DEFAULT_LIMITS.max_member_bytes
    max_shard_read_bytes: int | None = DEFAULT_LIMITS.max_shard_read_bytes
    max_pixels_per_frame: int | None = DEFAULT_LIMITS.max_pixels_per_frame
    max_duration_s: float | None = DEFAULT_LIMITS.max_duration_s
    max_frames: int | None = DEFAULT_LIMITS.max_frames


@dg.asset(
    partitions_def=shard_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[raw_archives],
    check_specs=_specs("transcoded_videos", TRANSCODE_CHECKS),
    output_required=False,
    group_name="kinetics",
    kinds={"ray", "lance"},
    description="Every clip of the shard as 360p H.264 in the Lance table, with metadata, label and status.",
)
def transcoded_videos(
    context: dg.AssetExecutionContext, config: TranscodeRunConfig, storage: StorageResource, ray_cluster: RayResource
) -> Iterator:
    shards = [get_shard(SHARDS, key) for key in context.partition_keys]
    annotations = {}
    if SETTINGS.annotations_url:
        annotations = load_annotations(fetch_annotations(SETTINGS.annotations_url, storage.local_root, SETTINGS.release))
    limits = Limits(
        max_member_bytes=config.max_member_bytes,
        max_shard_read_bytes=config.max_shard_read_bytes,
        max_pixels_per_frame=config.max_pixels_per_frame,
        max_duration_s=config.max_duration_s,
        max_frames=config.max_frames,
    )
    transcode_config = TranscodeConfig(
        short_side=config.short_side,
        preset=config.preset,
        crf=config.crf,
        keyframe_interval_s=config.keyframe_interval_s,
        timeout_s=config.timeout_s,
        **limits.frame_limits(),
    )
    in_flight = config.max_in_flight or 2 * ray_cluster.cluster_cpus()
    options = storage.storage_options
    counts = [verified_video_count(shard, storage.data_root, options) for shard in shards]
    expected = sum(counts) if all(c is not None for c in counts) else None
    context.log.info(f"transcoding {len(shards)} shard(s) ({expected if expected is not None else 'unknown'} clips) "
                     f"through one window of {in_flight} clips")
    sources = [
        # Archives on object storage are staged in the local cache while read, then removed.
        ShardSource(shard, _stager(shard, storage), verified_sha256(shard, storage.data_root, options))
        for shard in shards
    ]
    results = transcode_shards(
        sources,
        lance_uri=storage.lance_uri,
        storage_options=options,
        annotations=annotations,
        config=transcode_config,
        retry_failed_only=config.retry_failed_only,
        skip_committed=not config.force,
        options=RayTranscodeOptions(max_in_flight=in_flight),
        properties={"dagster_run_id": context.run_id},
        log=context.log.info,
        limits=limits,
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
        verdicts = result.checks
        done.append(ShardRecord(result.shard, _transcode_metadata(result, storage, transcode_config,
                                                                  upstream[result.shard]), verdicts))
        for name in _failed_blocking(TRANSCODE_CHECKS, verdicts):
            failed[result.shard] = f"blocking check {name} failed: {verdicts[name].details}"
    yield from _finish_run(context, "transcoded_videos", TRANSCODE_CHECKS, done, failed)


def _stager(shard, storage: StorageResource):
    return lambda: local_source(shard, storage.data_root, storage_options=storage.storage_options,
                                cache_dir=storage.local_cache)


def _transcode_metadata(result: TranscodeStepResult, storage: StorageResource, config: TranscodeConfig,
                        upstream_sha: str) -> dict:
    processed = max(result.processed, 1)
    return {
        "lance_uri": storage.lance_uri,
        "lance_version": result.version,
        "mode": result.mode,
        "rows_ok": result.ok + result.kept,
        "rows_failed": result.failed,
        "clips_processed": result.processed,
        "ok_rows_kept": result.kept,
        "failures": dg.MetadataValue.md(
            _markdown_table(result.failures, ["video_id", "error_type", "error_message"])
        ),
        "bytes_in": result.bytes_in,
        "bytes_out": result.bytes_out,
        "videos_per_s": round(result.processed / result.seconds, 3) if result.seconds else 0.0,
        "cpu_s_per_video": round(result.cpu_seconds / processed, 3),
        "seconds": round(result.seconds, 2),
        "commit_attempts": result.commit_attempts,
        "skipped_members_count": len(result.skipped),
        "skipped_members": dg.MetadataValue.md(_markdown_table(result.skipped, ["member", "kind", "reason"])),
        "encoder": dg.MetadataValue.json(config.as_dict()),
        "upstream_sha256": upstream_sha,
    }


def _check_metadata(meta: dict) -> dict:
    return {k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v) for k, v in meta.items()}


# ---------------------------------------------------------------------------------------------------
# depth_maps


class DepthRunConfig(dg.Config):
    sampling: str = "every"
    """`every` frame (aligned 1:1 with the video), `fps=<rate>`, or `count=<frames per video>`."""
    codec: str = "h264_gray10"
    """`h264_gray10` (small, lossy at ~1e-3 of the range) or `ffv1_gray16` (lossless 16-bit, ~100x larger)."""
    crf: int = 12
    max_in_flight: int = 4
    """Videos between decode and encode at once, across the run's shards (their frames are held in memory)."""
    force: bool = False
    """Make depth again for shards whose ok videos all have depth from the same model, sampling and
    codec, made after the video (by default they are skipped). A changed `crf` alone needs it."""


@dg.asset(
    partitions_def=shard_partitions,
    backfill_policy=BACKFILL_POLICY,
    deps=[transcoded_videos],
    check_specs=_specs("depth_maps", DEPTH_CHECKS),
    output_required=False,
    group_name="kinetics",
    kinds={"ray", "pytorch", "lance"},
    pool="depth",
    description="Per-frame monocular depth (Depth Anything V2) of every ok video, as depth columns of the same table.",
)
def depth_maps(
    context: dg.AssetExecutionContext,
    config: DepthRunConfig,
    storage: StorageResource,
    ray_cluster: RayResource,
    depth_model: DepthModelResource,
) -> Iterator:
    shards = [get_shard(SHARDS, key).key for key in context.partition_keys]
    model_config, pretrained = depth_model.resolve_model(storage.local_root / "models" / "random-depth-anything")
    if not pretrained:
        context.log.warning(
            "!!! The weights of %s could not be found or downloaded: using a RANDOMLY INITIALISED model. "
            "The depth written is NOT meaningful; the table's depth_pretrained column and this "
            "materialization's metadata say so. !!!" % depth_model.model_id
        )
    actors, gpus = depth_model.actor_layout(depth_steps_at_once=_pool_limit(context.instance, "depth"))
    context.log.info(f"depth for {len(shards)} shard(s) on {actors} model actor(s) ({gpus:g} GPU each)")
    results = depth_shards(
        shards,
        lance_uri=storage.lance_uri,
        storage_options=storage.storage_options,
        model=model_config,
        sampling=FrameSampling.parse(config.sampling),
        encoding=DepthEncoding(codec=config.codec, crf=config.crf),
        options=RayDepthOptions(actors=actors, actor_num_gpus=gpus, actor_num_cpus=depth_model.actor_num_cpus,
                                max_in_flight=config.max_in_flight),
        pretrained=pretrained,
        skip_committed=not config.force,
        log=context.log.info,
    )
    failed: dict[str, str] = {}
    done: list[ShardRecord] = []
    started = time.monotonic()
    for result in results:
        if isinstance(result, ShardFailure):
            context.log.error(result.error)
            failed[result.shard] = result.error
            continue
        done.append(ShardRecord(result.shard, _depth_metadata(result, storage, config, model_config.batch_size,
                                                              pretrained), dict(result.checks)))
    context.log.info(f"depth step: {time.monotonic() - started:.1f} s for {len(shards)} shard(s)")
    yield from _finish_run(context, "depth_maps", DEPTH_CHECKS, done, failed)


def _pool_limit(instance: dg.DagsterInstance, pool: str) -> int:
    """How many steps of `pool` may run at once in this instance (its own limit, else the default)."""
    for limit in instance.event_log_storage.get_pool_limits():
        if limit.name == pool:
            return max(limit.limit, 1)
    return max(instance.get_concurrency_config().pool_config.default_pool_limit or 1, 1)


def _depth_metadata(result: DepthStepResult, storage: StorageResource, config: DepthRunConfig, batch_size: int,
                    pretrained: bool) -> dict:
    metadata = {
        "lance_uri": storage.lance_uri,
        "lance_version": result.version,
        "unchanged": result.unchanged,
        "videos": result.videos,
        "depth_ok": result.ok,
        "depth_failed": result.failed,
        "failures": dg.MetadataValue.md(_markdown_table(result.failures, ["video_id", "depth_error"])),
        "frames": result.frames,
        "frames_per_s": _rate(result.frames, result.seconds),
        "frames_per_s_after_model_load": _rate(result.frames, result.seconds - result.model_load_s),
        "seconds": round(result.seconds, 2),
        "model_load_s": round(result.model_load_s, 2),
        "model_id": result.model.get("model_id", ""),
        "model_revision": str(result.model.get("revision", "")),
        "pretrained_weights": pretrained,
        "device": result.model.get("device", ""),
        "dtype": result.model.get("dtype", ""),
        "batch_size": batch_size,
        "sampling": config.sampling,
        "encoding": f"{config.codec} crf={config.crf}",
        "bytes_per_video": result.bytes_total // max(result.ok, 1),
    }
    if result.preview_png:
        encoded = base64.b64encode(result.preview_png).decode()
        metadata["preview"] = dg.MetadataValue.md(f"![frame and its depth](data:image/png;base64,{encoded})")
    return metadata
