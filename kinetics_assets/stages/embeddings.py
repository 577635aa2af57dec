"""One embedding per ok video: an image-text model (SigLIP 2 by default) over a few frames spread
over the clip, the frames' vectors pooled and L2-normalised into the `embedding` column, stored as a
fixed-size list of float16 whose width the model decides.

prepare decodes the sampled frames and runs the checkpoint's image processor (a CPU task), infer runs
the image tower over the frames of one or more videos (a model worker), finish pools each video's
frames (where the outputs arrive: it is a mean of a few vectors).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.media.transcode import release_av_cycles
from kinetics_assets.stages.contract import ModelStage, Prepared, Resources, VideoTask, as_settings
from kinetics_assets.stages.rows import StageRow, bind, column
from kinetics_assets.steps.checks import (
    EMBEDDING_FRAMES_WITHIN_CLIP,
    EMBEDDINGS_UNIT_NORM,
    EVERY_OK_VIDEO_HAS_EMBEDDING,
    Verdict,
    Verdicts,
)
from kinetics_assets.table import shard_ok_rows

if TYPE_CHECKING:
    from collections.abc import Hashable, Sequence

    import lance

    from kinetics_assets.embed.model import ClipEmbedder, EmbeddingModelConfig
    from kinetics_assets.stages.contract import SettingValue

__all__ = [
    "DEFAULT_SAMPLING",
    "EMBEDDING_SCHEMA",
    "ClipEmbeddingsStage",
    "EmbeddingRow",
    "embedding_columns",
]

DEFAULT_SAMPLING = FrameSampling("count", count=8)
"""Eight frames at the centres of eight equal stretches of the clip."""
NORM_TOLERANCE = 1e-2
"""How far from 1 a stored vector's norm may be: float16 keeps ~3 significant digits per value."""
_TIME_TOLERANCE_S = 1e-3  # container timestamps carry rounding

EMBEDDING_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        # The rows' type; as stored it is fixed-size, of the model's width (`embedding_columns`).
        pa.field("embedding", pa.list_(pa.float16())),
        pa.field("embedding_status", pa.string()),  # ok, failed
        pa.field("embedding_error", pa.string()),
        pa.field("embedding_frames", pa.list_(pa.float64())),  # times (s) of the frames pooled
        pa.field("embedding_sampling", pa.string()),
        pa.field("embedding_model", pa.string()),
        pa.field("embedding_model_revision", pa.string()),
        pa.field("embedding_pretrained", pa.bool_()),
        pa.field("embedding_processed_at", pa.timestamp("us", tz="UTC")),
        pa.field("embedding_settings", pa.string()),
    ]
)


def embedding_columns(width: int) -> pa.Schema:
    """The group as stored: `embedding` a fixed-size list of `width` float16 (half the bytes of
    float32, and what Lance's vector indexes take as is).
    """
    index = EMBEDDING_SCHEMA.get_field_index("embedding")
    return EMBEDDING_SCHEMA.set(index, pa.field("embedding", pa.list_(pa.float16(), width)))


@dataclass(frozen=True, kw_only=True)
class EmbeddingRow(StageRow):
    """A video's embedding columns; the vector and the times are None when the status is failed."""

    prefix: ClassVar[str] = "embedding"
    schema: ClassVar = EMBEDDING_SCHEMA
    video_id: str
    status: str
    error: str | None = None
    vector: list[float] | None = column(name="embedding")
    frames: list[float] | None = column()
    sampling: str | None = column()


bind(EmbeddingRow, model=True)


@dataclass(frozen=True, kw_only=True)
class EmbedMeta:
    """The times of a video's sampled frames (small: travels between tasks)."""

    times: list[float]


Payload = dict[str, np.ndarray]
"""The image processor's outputs for a video's frames, frames first."""


@dataclass(frozen=True, kw_only=True)
class ClipEmbeddingsStage(ModelStage[EmbeddingRow, EmbedMeta, Payload, np.ndarray]):
    name: ClassVar[str] = "embeddings"
    asset: ClassVar[str] = "clip_embeddings"
    row_type: ClassVar = EmbeddingRow
    statuses: ClassVar = ("ok", "failed")
    default_in_flight: ClassVar[int] = 16

    model: EmbeddingModelConfig
    sampling: FrameSampling = DEFAULT_SAMPLING
    resources: Resources = Resources()
    pretrained: bool = True

    @functools.cached_property
    def width(self) -> int:
        """The model's vector width, from its config alone (the driver loads no weights)."""
        from kinetics_assets.embed.model import embedding_width  # transformers: when first asked

        return embedding_width(self.model)

    def settings(self) -> dict[str, SettingValue]:
        return self.model_settings() | as_settings(sampling=self.sampling.describe(), pooling="mean")

    def columns(self) -> pa.Schema:
        return embedding_columns(self.width)

    def check_table_columns(self, table: pa.Schema) -> None:
        if "embedding" in table.names:
            stored = table.field("embedding").type
            if not (pa.types.is_fixed_size_list(stored) and stored.list_size == self.width):
                width = stored.list_size if pa.types.is_fixed_size_list(stored) else "variable"
                raise ValueError(
                    f"the table's embedding column holds vectors of width {width} (fixed by its first write); "
                    f"the embedding model {self.model.model_id!r} makes vectors of width {self.width}. Set the "
                    f"embedding model (EmbeddingModelConfig.model_id / local_path, KINETICS_EMBEDDING_MODEL_ID / "
                    f"KINETICS_EMBEDDING_MODEL_PATH) to one of width {width}, or write to a new table"
                )
        super().check_table_columns(table)

    def load_model(self) -> ClipEmbedder:
        from kinetics_assets.embed.model import ClipEmbedder  # torch: on the model worker only

        return ClipEmbedder(self.model)

    def frames_of(self, row: EmbeddingRow) -> int:
        return len(row.frames or ())

    def prepare(self, task: VideoTask) -> Prepared[EmbedMeta, Payload]:
        from kinetics_assets.embed.model import preprocess_frames  # transformers: on the CPU worker

        data = task.snapshot.video(task.row_id).read()
        frames, times = decode_frames(data, self.sampling.indices(frame_timestamps(data)), threads=self.resources.cpus)
        release_av_cycles()
        if len(frames) == 0:
            raise ValueError("no frames to embed")
        inputs = preprocess_frames(self.model, frames)
        return Prepared(
            task=task,
            meta=EmbedMeta(times=[float(t) for t in times]),
            payload=inputs,
            batch_key=_shapes(inputs),
            weight=len(frames),
        )

    def infer(self, payloads: Sequence[Payload]) -> list[np.ndarray]:
        from kinetics_assets.embed.model import pool_clip  # torch: on the model worker only

        joined = {key: np.concatenate([p[key] for p in payloads]) for key in payloads[0]}
        vectors = self.loaded.embed_inputs(joined)
        counts = [len(next(iter(p.values()))) for p in payloads]
        return [pool_clip(v) for v in np.split(vectors, np.cumsum(counts)[:-1])]

    def finish(self, prepared: Prepared[EmbedMeta, None], output: np.ndarray) -> EmbeddingRow:
        return EmbeddingRow(
            video_id=prepared.task.video_id,
            status="ok",
            vector=[float(v) for v in output],
            frames=prepared.meta.times,
            sampling=self.sampling.describe(),
        )

    def failed_row(self, task: VideoTask, error: str) -> EmbeddingRow:
        return EmbeddingRow(video_id=task.video_id, status="failed", error=error, sampling=self.sampling.describe())

    def check(self, ds: lance.LanceDataset, shard: str) -> Verdicts:
        columns = ["video_id", "duration_s", "frames", "embedding", "embedding_status", "embedding_frames"]
        rows = shard_ok_rows(ds, shard, columns)
        without = [r["video_id"] for r in rows if r["embedding_status"] != "ok" or r["embedding"] is None]
        made = [r for r in rows if r["video_id"] not in without]
        off_norm = [r["video_id"] for r in made if not _unit(r["embedding"], self.width)]
        off_frames = [r["video_id"] for r in made if not _frames_within(r, self.sampling)]
        return {
            EVERY_OK_VIDEO_HAS_EMBEDDING.name: Verdict(not without, {"ok_videos": len(rows), "without": without[:20]}),
            EMBEDDINGS_UNIT_NORM.name: Verdict(not off_norm, {"width": self.width, "problems": off_norm[:20]}),
            EMBEDDING_FRAMES_WITHIN_CLIP.name: Verdict(not off_frames, {"problems": off_frames[:20]}),
        }


def _shapes(inputs: Payload) -> Hashable:
    """Inputs of one shape per frame (and dtype) stack into one forward pass."""
    return tuple((key, value.shape[1:], str(value.dtype)) for key, value in sorted(inputs.items()))


def _unit(vector: list[float], width: int) -> bool:
    values = np.asarray(vector, dtype=np.float32)
    finite = bool(np.isfinite(values).all())
    return len(values) == width and finite and abs(float(np.linalg.norm(values)) - 1) <= NORM_TOLERANCE


def _frames_within(row: dict[str, Any], sampling: FrameSampling) -> bool:
    """As many times as the sampling keeps (`count`: that many, or every frame of a shorter clip),
    ascending, within the clip.
    """
    times, duration, frames = row["embedding_frames"] or [], row["duration_s"] or 0.0, row["frames"]
    if sampling.policy == "count" and frames is not None and len(times) != min(sampling.count or 0, frames):
        return False
    slack = _TIME_TOLERANCE_S
    return len(times) > 0 and times == sorted(times) and all(-slack <= t <= duration + slack for t in times)
