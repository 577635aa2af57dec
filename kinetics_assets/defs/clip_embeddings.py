"""`clip_embeddings`: one image-text vector (SigLIP 2 by default) per ok video, in the same table, for
search and near-duplicates.
"""

from typing import Any

import dagster as dg

from kinetics_assets.defs.column_asset import ColumnAsset, build_column_asset
from kinetics_assets.defs.engine_config import RunConfig
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.defs.recording import rate
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.steps.checks import EMBEDDING_CHECKS


class ClipEmbeddingsRunConfig(RunConfig):
    """Which frames of each video are embedded and pooled into its one vector."""

    sampling: str = "count=8"
    """`count=<frames per video>` spread over the clip (default 8), `fps=<rate>`, or `every` frame."""
    force: bool = False
    """Embed again shards whose ok videos all have embeddings made after them with the same settings
    (model, sampling); by default they are skipped."""
    max_in_flight: int | None = None
    """Videos between decode and pooling at once, across the run's shards; None: the stage's own default (16)."""
    task_num_cpus: int = 1
    """CPUs each decode task reserves; its decoder runs exactly that many threads."""

    def to_sampling(self) -> FrameSampling:
        return FrameSampling.parse(self.sampling)


def _stage(config: ClipEmbeddingsRunConfig, model: Any, pretrained: bool) -> Any:  # noqa: ANN401, FBT001 - the factory's signature
    from kinetics_assets.stages import Resources
    from kinetics_assets.stages.embeddings import ClipEmbeddingsStage  # the decoder: loaded by the step

    return ClipEmbeddingsStage(
        model=model,
        sampling=config.to_sampling(),
        resources=Resources(cpus=config.task_num_cpus),
        pretrained=pretrained,
    )


def _metadata(result: Any, stage: Any, config: ClipEmbeddingsRunConfig) -> dict[str, Any]:  # noqa: ANN401 - a StageShardResult of EmbeddingRows, a ClipEmbeddingsStage
    frames = sum(len(r.frames or ()) for r in result.rows)
    return {
        "videos": result.videos,
        "embedding_ok": result.ok,
        "embedding_failed": result.failed,
        "embedding_width": stage.width,
        "frames": frames,
        "videos_per_s": rate(result.videos, result.seconds),
        "videos_per_s_after_model_load": rate(result.videos, result.seconds - result.model_load_s),
        "batch_size_frames": stage.batch_size,
        "sampling": config.sampling,
    }


CLIP_EMBEDDINGS = ColumnAsset(
    name="clip_embeddings",
    description=(
        "One L2-normalised image-text embedding (SigLIP 2) per ok video, pooled over frames spread over "
        "the clip, as a fixed-size float16 column of the same table."
    ),
    checks=EMBEDDING_CHECKS,
    pool="embeddings",
    kinds=frozenset({"pytorch", "lance"}),
    config=ClipEmbeddingsRunConfig,
    stage=_stage,
    metadata=_metadata,
    model_resource="embedding_model",
    random_model="random-siglip",
)


def build_clip_embeddings(shard_assets: ShardAssets) -> dg.AssetsDefinition:
    return build_column_asset(shard_assets, CLIP_EMBEDDINGS)
