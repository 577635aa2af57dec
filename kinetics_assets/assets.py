"""The partitioned assets and their checks. Each asset is a thin shell over a plain step function."""


import base64
import json
from pathlib import Path

import dagster as dg

from kinetics_assets.annotations import load_annotations
from kinetics_assets.depth_codec import DepthEncoding
from kinetics_assets.depth_step import depth_step
from kinetics_assets.download import DownloadConfig, sidecar_path
from kinetics_assets.frames import FrameSampling
from kinetics_assets.limits import DEFAULT_LIMITS, Limits
from kinetics_assets.partitions import SETTINGS, SHARDS, shard_partitions
from kinetics_assets.raw_step import fetch_annotations, fetch_shard, local_source
from kinetics_assets.ray_depth import RayDepthOptions
from kinetics_assets.ray_transcode import RayTranscodeOptions
from kinetics_assets.shards import get_shard
from kinetics_assets.transcode import TranscodeConfig
from kinetics_assets.transcode_step import transcode_step
from resources import DepthModelResource, RayResource, StorageResource


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


# ---------------------------------------------------------------------------------------------------
# raw_archives


class DownloadRunConfig(dg.Config):
    connect_timeout_s: float = 30.0
    read_timeout_s: float = 60.0
    max_attempts: int = 8
    max_archive_bytes: int | None = DEFAULT_LIMITS.max_archive_bytes
    """Largest archive (or video of a video list) accepted; null: no limit."""
    max_shard_read_bytes: int | None = DEFAULT_LIMITS.max_shard_read_bytes
    """Uncompressed bytes the archive's verification may read (a gzip bomb is refused); null: no limit."""


RAW_CHECKS = [
    dg.AssetCheckSpec("archive_verified", asset="raw_archives", description="gzip stream and tar index read end to end"),
    dg.AssetCheckSpec("has_video_members", asset="raw_archives", description="at least one video member"),
    dg.AssetCheckSpec("member_names_parse", asset="raw_archives", description="every video member is named <youtube_id>_<start>_<end>"),
]


@dg.asset(
    partitions_def=shard_partitions,
    check_specs=RAW_CHECKS,
    group_name="kinetics",
    kinds={"python", "aiohttp"},
    description="Each shard's archive (or its list of videos) downloaded, verified and indexed.",
)
def raw_archives(context: dg.AssetExecutionContext, config: DownloadRunConfig, storage: StorageResource) -> dg.MaterializeResult:
    shard = get_shard(SHARDS, context.partition_key)
    download_config = DownloadConfig(
        connect_timeout_s=config.connect_timeout_s, read_timeout_s=config.read_timeout_s, max_attempts=config.max_attempts,
        max_bytes=Limits(max_archive_bytes=config.max_archive_bytes).max_archive_bytes,
    )
    last_logged = [0]

    def progress(done: int, total: int | None) -> None:
        if total and done - last_logged[0] >= max(total // 10, 1):
            last_logged[0] = done
            context.log.info(f"shard {shard.key}: {done / 1e6:.1f} of {total / 1e6:.1f} MB")

    context.log.info(f"shard {shard.key}: fetching {len(shard.urls)} file(s) from {shard.url}")
    raw = fetch_shard(shard, storage.data_root, download_config, progress,
                      storage_options=storage.storage_options, cache_dir=storage.local_cache,
                      max_read_bytes=config.max_shard_read_bytes)
    seconds = sum(d.seconds for d in raw.downloads)
    total_bytes = sum(d.bytes for d in raw.downloads)
    sha256 = raw.downloads[0].sha256 if shard.kind == "archive" else _combined_sha(raw.downloads)
    unparsable = raw.unparsable
    return dg.MaterializeResult(
        metadata={
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
        },
        data_version=dg.DataVersion(sha256),
        check_results=[
            dg.AssetCheckResult(check_name="archive_verified", passed=True, metadata={"sha256": sha256}),
            dg.AssetCheckResult(
                check_name="has_video_members",
                passed=len(raw.index.video_members) > 0,
                metadata={"video_members": len(raw.index.video_members)},
            ),
            dg.AssetCheckResult(
                check_name="member_names_parse",
                passed=not unparsable,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"unparsable": dg.MetadataValue.json(unparsable[:100]), "count": len(unparsable)},
            ),
        ],
    )


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
    max_failure_rate: float = 0.2
    """Blocking check: the share of failed clips a shard may have."""
    max_in_flight: int | None = None
    """Clips submitted to Ray at once; default twice the cluster's CPUs."""
    # Limits against hostile input (kinetics_assets.limits); null switches one off.
    max_member_bytes: int | None = DEFAULT_LIMITS.max_member_bytes
    max_shard_read_bytes: int | None = DEFAULT_LIMITS.max_shard_read_bytes
    max_pixels_per_frame: int | None = DEFAULT_LIMITS.max_pixels_per_frame
    max_duration_s: float | None = DEFAULT_LIMITS.max_duration_s
    max_frames: int | None = DEFAULT_LIMITS.max_frames


TRANSCODE_CHECKS = [
    dg.AssetCheckSpec("one_row_per_member", asset="transcoded_videos", description="one row per video member of the source"),
    dg.AssetCheckSpec("video_id_unique", asset="transcoded_videos"),
    dg.AssetCheckSpec("failure_rate", asset="transcoded_videos", blocking=True, description="failed clips under max_failure_rate"),
    dg.AssetCheckSpec("ok_rows_decode", asset="transcoded_videos", description="every ok video opens and has the promised size"),
    dg.AssetCheckSpec("blob_sizes_positive", asset="transcoded_videos"),
]


def _upstream_sha(path: Path) -> str | None:
    sidecar = sidecar_path(path)
    if sidecar.exists():
        return json.loads(sidecar.read_text()).get("sha256")
    return None


@dg.asset(
    partitions_def=shard_partitions,
    deps=[raw_archives],
    check_specs=TRANSCODE_CHECKS,
    group_name="kinetics",
    kinds={"ray", "lance"},
    description="Every clip of the shard as 360p H.264 in the Lance table, with metadata, label and status.",
)
def transcoded_videos(
    context: dg.AssetExecutionContext, config: TranscodeRunConfig, storage: StorageResource, ray_cluster: RayResource
) -> dg.MaterializeResult:
    shard = get_shard(SHARDS, context.partition_key)
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
    # Archives on object storage are staged in the local cache while read, then removed.
    with local_source(shard, storage.data_root, storage_options=storage.storage_options,
                      cache_dir=storage.local_cache) as source:
        upstream_sha = _upstream_sha(source) or ""
        result = transcode_step(
            shard,
            source,
            lance_uri=storage.lance_uri,
            storage_options=storage.storage_options,
            annotations=annotations,
            config=transcode_config,
            retry_failed_only=config.retry_failed_only,
            options=RayTranscodeOptions(max_in_flight=in_flight),
            properties={"dagster_run_id": context.run_id},
            log=context.log.info,
            limits=limits,
        )
    rate = result.checks["failure_rate"][1]["rate"]
    result.checks["failure_rate"] = (rate <= config.max_failure_rate, {**result.checks["failure_rate"][1], "max": config.max_failure_rate})
    processed = max(result.processed, 1)
    return dg.MaterializeResult(
        metadata={
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
            "encoder": dg.MetadataValue.json(transcode_config.as_dict()),
            "upstream_sha256": upstream_sha,
        },
        data_version=dg.DataVersion(f"{shard.key}@v{result.version}"),
        check_results=[
            dg.AssetCheckResult(check_name=name, passed=passed, metadata=_check_metadata(meta))
            for name, (passed, meta) in result.checks.items()
        ],
    )


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
    """Videos between decode and encode at once (their frames are held in memory)."""


DEPTH_CHECKS = [
    dg.AssetCheckSpec("every_ok_video_has_depth", asset="depth_maps"),
    dg.AssetCheckSpec("depth_frame_count", asset="depth_maps", description="decoded depth frames = stored = sampled"),
    dg.AssetCheckSpec("depth_values_in_range", asset="depth_maps", description="finite and within the stored lo/hi"),
    dg.AssetCheckSpec("depth_size_matches_video", asset="depth_maps"),
]


@dg.asset(
    partitions_def=shard_partitions,
    deps=[transcoded_videos],
    check_specs=DEPTH_CHECKS,
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
) -> dg.MaterializeResult:
    shard = get_shard(SHARDS, context.partition_key)
    model_config, pretrained = depth_model.resolve_model(storage.local_root / "models" / "random-depth-anything")
    if not pretrained:
        context.log.warning(
            "!!! The weights of %s could not be found or downloaded: using a RANDOMLY INITIALISED model. "
            "The depth written is NOT meaningful; the table's depth_pretrained column and this "
            "materialization's metadata say so. !!!" % depth_model.model_id
        )
    actors, gpus = depth_model.actor_layout()
    result = depth_step(
        shard.key,
        lance_uri=storage.lance_uri,
        storage_options=storage.storage_options,
        model=model_config,
        sampling=FrameSampling.parse(config.sampling),
        encoding=DepthEncoding(codec=config.codec, crf=config.crf),
        options=RayDepthOptions(actors=actors, actor_num_gpus=gpus, actor_num_cpus=depth_model.actor_num_cpus,
                                max_in_flight=config.max_in_flight),
        pretrained=pretrained,
        log=context.log.info,
    )
    metadata = {
        "lance_uri": storage.lance_uri,
        "lance_version": result.version,
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
        "batch_size": model_config.batch_size,
        "sampling": config.sampling,
        "encoding": f"{config.codec} crf={config.crf}",
        "bytes_per_video": result.bytes_total // max(result.ok, 1),
    }
    if result.preview_png:
        encoded = base64.b64encode(result.preview_png).decode()
        metadata["preview"] = dg.MetadataValue.md(f"![frame and its depth](data:image/png;base64,{encoded})")
    return dg.MaterializeResult(
        metadata=metadata,
        data_version=dg.DataVersion(f"{shard.key}@v{result.version}"),
        check_results=[
            dg.AssetCheckResult(check_name=name, passed=passed, metadata=_check_metadata(meta))
            for name, (passed, meta) in result.checks.items()
        ],
    )
