"""`depth_maps`: per-frame depth of every ok video, as depth columns of the same table, on Ray."""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from kinetics_assets.defs.engine_config import RunConfig, engine_fields, to_engine, with_engine_fields
from kinetics_assets.defs.model_actors import model_for_step
from kinetics_assets.defs.partitions import SHARDS, shard_asset
from kinetics_assets.defs.recording import collect, depth_record, finish_run
from kinetics_assets.defs.transcoded_videos import transcoded_videos
from kinetics_assets.distributed.depth import RayDepthExecutor, RayDepthOptions
from kinetics_assets.ingest.shards import get_shard
from kinetics_assets.media.depth_codec import DepthEncoding
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.steps.checks import DEPTH_CHECKS
from kinetics_assets.steps.depth import depth_shards
from resources import DepthModelResource, RayResource, StorageResource


class _DepthSettings(RunConfig):
    """What depth is made of each video and how it is stored: `codec` `h264_gray10` (small, lossy at
    ~1e-3 of the range) or `ffv1_gray16` (lossless 16-bit, ~100x larger); `max_in_flight` videos
    between decode and encode at once, across the run's shards (their frames are held in memory)."""

    sampling: str = "every"
    """`every` frame (aligned 1:1 with the video), `fps=<rate>`, or `count=<frames per video>`."""
    force: bool = False
    """Make depth again for shards whose ok videos all have depth from the same model, sampling and
    codec, made after the video (by default they are skipped). A changed `crf` alone needs it."""

    def to_sampling(self) -> FrameSampling:
        return FrameSampling.parse(self.sampling)

    def to_encoding(self) -> DepthEncoding:
        return to_engine(self, DepthEncoding)

    def to_options(self, **actor_layout: Any) -> RayDepthOptions:
        return to_engine(self, RayDepthOptions, **actor_layout)


DepthRunConfig = with_engine_fields(
    "DepthRunConfig",
    _DepthSettings,
    engine_fields(DepthEncoding, "codec", "crf"),
    engine_fields(RayDepthOptions, "max_in_flight"),
)


@shard_asset(
    checks=DEPTH_CHECKS,
    deps=[transcoded_videos],
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
    model_config, pretrained, layout = model_for_step(
        context,
        depth_model,
        storage.local_root / "models" / "random-depth-anything",
        pool="depth",
        what="depth",
        column="depth_pretrained",
    )
    encoding = config.to_encoding()
    results = depth_shards(
        shards,
        lance_uri=storage.lance_uri,
        storage_options=storage.storage_options,
        model=model_config,
        sampling=config.to_sampling(),
        encoding=encoding,
        executor=RayDepthExecutor(options=config.to_options(**layout)),
        pretrained=pretrained,
        skip_committed=not config.force,
        log=context.log.info,
    )
    started = time.monotonic()
    done, failed = collect(
        context,
        results,
        lambda result: depth_record(
            result,
            lance_uri=storage.lance_uri,
            sampling=config.sampling,
            encoding=encoding,
            batch_size=model_config.batch_size,
            pretrained=pretrained,
        ),
    )
    context.log.info(f"depth step: {time.monotonic() - started:.1f} s for {len(shards)} shard(s)")
    yield from finish_run(context, checks=DEPTH_CHECKS, done=done, failed=failed)
