"""`depth_maps`: per-frame depth of every ok video, as depth columns of the same table, on Ray or in process."""

import time
from collections.abc import Iterator

import dagster as dg

from kinetics_assets.defs.engine_config import RunConfig, adding_engine_fields, engine_fields, to_engine
from kinetics_assets.defs.model_actors import model_for_step
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.defs.recording import collect, depth_record, finish_run
from kinetics_assets.distributed.options import RayDepthOptions
from kinetics_assets.media.depth_codec import DepthEncoding
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.steps.checks import DEPTH_CHECKS
from resources import ClipExecution, DepthModelResource, StorageResource


@adding_engine_fields(
    engine_fields(DepthEncoding, "codec", "crf"),
    engine_fields(RayDepthOptions, "max_in_flight", "task_num_cpus"),
)
class DepthRunConfig(RunConfig):
    """What depth is made of each video and how it is stored: `codec` `h264_gray10` (small, lossy at
    ~1e-3 of the range) or `ffv1_gray16` (lossless 16-bit, ~100x larger); `max_in_flight` videos
    between decode and encode at once, across the run's shards (their frames are held in memory).
    """

    sampling: str = "every"
    """`every` frame (aligned 1:1 with the video), `fps=<rate>`, or `count=<frames per video>`."""
    force: bool = False
    """Make depth again for shards whose ok videos all have depth from the same model, sampling and
    codec, made after the video (by default they are skipped). A changed `crf` alone needs it."""

    def to_sampling(self) -> FrameSampling:
        return FrameSampling.parse(self.sampling)

    def to_encoding(self) -> DepthEncoding:
        return to_engine(self, DepthEncoding)

    def to_options(
        self, *, actors: int = 1, actor_num_gpus: float = 0.0, actor_num_cpus: float = 0.0
    ) -> RayDepthOptions:
        return to_engine(
            self, RayDepthOptions, actors=actors, actor_num_gpus=actor_num_gpus, actor_num_cpus=actor_num_cpus
        )


def build_depth_maps(shard_assets: ShardAssets) -> dg.AssetsDefinition:
    @shard_assets.asset(
        checks=DEPTH_CHECKS,
        deps=["transcoded_videos"],
        kinds={"pytorch", "lance"},
        pool="depth",
        uses_ray=True,
        description="Per-frame monocular depth (Depth Anything V2) of every ok video, as depth columns of the same table.",
    )
    def depth_maps(
        context: dg.AssetExecutionContext,
        config: DepthRunConfig,
        storage: StorageResource,
        execution: ClipExecution,
        depth_model: DepthModelResource,
    ) -> Iterator:
        from kinetics_assets.steps.depth import depth_shards  # Lance and the codecs: loaded by the step

        shards = [shard_assets.shard(key).key for key in context.partition_keys]
        model_config, pretrained, layout = model_for_step(
            context,
            depth_model,
            storage.local_root / "models" / "random-depth-anything",
            execution=execution,
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
            executor=execution.depth_executor(config.to_options(**layout)),
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
        context.log.info("depth step: %.1f s for %d shard(s)", time.monotonic() - started, len(shards))
        yield from finish_run(context, checks=DEPTH_CHECKS, done=done, failed=failed)

    return depth_maps
