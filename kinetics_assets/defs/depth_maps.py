"""`depth_maps`: per-frame depth of every ok video, as depth columns of the same table."""

from typing import Any

import dagster as dg

from kinetics_assets.defs.column_asset import ColumnAsset, build_column_asset
from kinetics_assets.defs.engine_config import RunConfig, adding_engine_fields, engine_fields, to_engine
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.defs.recording import rate
from kinetics_assets.media.depth_codec import DepthEncoding
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.steps.checks import DEPTH_CHECKS


@adding_engine_fields(engine_fields(DepthEncoding, "codec", "crf"))
class DepthRunConfig(RunConfig):
    """What depth is made of each video and how it is stored: `codec` `h264_gray10` (small, lossy at
    ~1e-3 of the range) or `ffv1_gray16` (lossless 16-bit, ~100x larger).
    """

    sampling: str = "every"
    """`every` frame (aligned 1:1 with the video), `fps=<rate>`, or `count=<frames per video>`."""
    force: bool = False
    """Make depth again for shards whose ok videos all have depth made after them with the same
    settings (model, sampling, codec, crf); by default they are skipped."""
    max_in_flight: int | None = None
    """Videos between decode and encode at once, across the run's shards (their frames are held in
    memory); None: the stage's own default (4)."""
    task_num_cpus: int = 1
    """CPUs each decode and encode task reserves; its codec runs exactly that many threads."""

    def to_sampling(self) -> FrameSampling:
        return FrameSampling.parse(self.sampling)

    def to_encoding(self) -> DepthEncoding:
        return to_engine(self, DepthEncoding)


def _stage(config: DepthRunConfig, model: Any, pretrained: bool) -> Any:  # noqa: ANN401, FBT001 - the factory's signature
    from kinetics_assets.stages import DepthStage, Resources  # the codecs: loaded by the step

    return DepthStage(
        model=model,
        sampling=config.to_sampling(),
        encoding=config.to_encoding(),
        resources=Resources(cpus=config.task_num_cpus),
        pretrained=pretrained,
    )


def _metadata(result: Any, stage: Any, config: DepthRunConfig) -> dict[str, Any]:  # noqa: ANN401 - a StageShardResult of DepthRows, a DepthStage
    frames = sum(r.frames or 0 for r in result.rows)
    encoding = config.to_encoding()
    return {
        "videos": result.videos,
        "depth_ok": result.ok,
        "depth_failed": result.failed,
        "frames": frames,
        "frames_per_s": rate(frames, result.seconds),
        "frames_per_s_after_model_load": rate(frames, result.seconds - result.model_load_s),
        "batch_size": stage.batch_size,
        "sampling": config.sampling,
        "encoding": f"{encoding.codec} crf={encoding.crf}",
        "bytes_per_video": sum(len(r.data or b"") for r in result.rows) // max(result.ok, 1),
    }


def _preview(uri: str, storage_options: dict[str, str] | None, version: int, shard: str) -> bytes | None:
    from kinetics_assets.qa.previews import shard_preview  # matplotlib: loaded by the step
    from kinetics_assets.table import open_table

    return shard_preview(open_table(uri, storage_options, version=version), shard)


DEPTH_MAPS = ColumnAsset(
    name="depth_maps",
    description="Per-frame monocular depth (Depth Anything V2) of every ok video, as depth columns of the same table.",
    checks=DEPTH_CHECKS,
    pool="depth",
    kinds=frozenset({"pytorch", "lance"}),
    config=DepthRunConfig,
    stage=_stage,
    metadata=_metadata,
    model_resource="depth_model",
    random_model="random-depth-anything",
    preview=_preview,
)


def build_depth_maps(shard_assets: ShardAssets) -> dg.AssetsDefinition:
    return build_column_asset(shard_assets, DEPTH_MAPS)
