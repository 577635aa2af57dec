"""An image-text model (SigLIP 2 by default) through transformers: frames and texts in, L2-normalised
vectors out, and a clip's vector as the renormalised mean of its frames'.

Frames go through the checkpoint's own image processor (its size, resampling and normalisation), in
two halves a stage can run apart: `preprocess` on a CPU worker, `embed_inputs` on the model's. Any
checkpoint `AutoModel` loads with `get_image_features` and `get_text_features` works (SigLIP, SigLIP 2
fixed-resolution and NaFlex); its two towers must end in vectors of one width.

This module imports neither dagster nor ray.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from kinetics_assets import hub
from kinetics_assets.embed import DEFAULT_MODEL_ID
from kinetics_assets.hub import WeightsSource, resolve_device

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

__all__ = [
    "ClipEmbedder",
    "EmbeddingModelConfig",
    "EmbeddingModelUnavailable",
    "check_weights_available",
    "embedding_width",
    "image_processor",
    "normalise",
    "pool_clip",
    "preprocess_frames",
    "text_embedder",
    "width_of",
]

_FRAMES_NDIM = 4  # [N, H, W, C]
_RGB_CHANNELS = 3


@dataclass(frozen=True)
class EmbeddingModelConfig:
    """Which image-text model to run, where, and how many frames one forward pass takes.

    Weights are found by the rules of `kinetics_assets.hub`: `local_path` (a `save_pretrained`
    folder with the model and its processor) wins over `model_id`, which is then only the name
    reported for lineage.
    """

    model_id: str = DEFAULT_MODEL_ID
    revision: str | None = None
    local_path: str | os.PathLike[str] | None = None
    device: str = "auto"  # "auto" -> cuda when available, else cpu; or any torch device string
    dtype: str = "auto"  # "auto" -> float16 on cuda, float32 on cpu; or float32/float16/bfloat16
    batch_size: int = 32
    """Frames (or texts) per forward pass."""
    cache_dir: str | os.PathLike[str] | None = None

    def weights(self) -> WeightsSource:
        return WeightsSource(
            "Embedding model", "EmbeddingModelConfig", self.model_id, self.revision, self.local_path, self.cache_dir
        )


class EmbeddingModelUnavailable(Exception):  # noqa: N818 - public name, caught by name like the other models'
    """The model's weights are neither on this machine nor reachable on the Hugging Face Hub."""


def check_weights_available(config: EmbeddingModelConfig) -> None:
    """Raise EmbeddingModelUnavailable unless the model can be loaded, without loading its weights."""
    hub.check_available(config.weights(), EmbeddingModelUnavailable)


def width_of(model_config: Any) -> int:  # noqa: ANN401 - any transformers config with the two towers
    """The width of the model's vectors: the image tower's pooled output, which the text tower's
    projection must match (cosine between the two is what search means).
    """
    vision, text = getattr(model_config, "vision_config", None), getattr(model_config, "text_config", None)
    if vision is None or text is None:
        raise ValueError(f"{type(model_config).__name__} is not an image-text model (no vision and text towers)")
    width = int(vision.hidden_size)
    text_width = int(getattr(text, "projection_size", None) or text.hidden_size)
    if width != text_width:
        raise ValueError(f"the model's image vectors are {width} wide, its text vectors {text_width}")
    return width


@functools.lru_cache(maxsize=4)
def embedding_width(config: EmbeddingModelConfig) -> int:
    """The width of the model's vectors, from its config.json alone (no weights, no torch model)."""
    from transformers import AutoConfig

    return width_of(hub.from_pretrained(config.weights(), AutoConfig.from_pretrained, EmbeddingModelUnavailable))


@functools.lru_cache(maxsize=4)
def image_processor(config: EmbeddingModelConfig) -> Any:  # noqa: ANN401 - the checkpoint's image processor
    """The checkpoint's image processor, loaded once per process (a CPU worker needs no model)."""
    from transformers import AutoImageProcessor

    return hub.from_pretrained(config.weights(), AutoImageProcessor.from_pretrained, EmbeddingModelUnavailable)


def preprocess_frames(config: EmbeddingModelConfig, frames: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 RGB [N,H,W,3] -> the model's image inputs (pixel values, and for NaFlex its patch mask
    and shapes), as numpy arrays with N first.
    """
    frames = np.asarray(frames)
    if frames.ndim != _FRAMES_NDIM or frames.shape[-1] != _RGB_CHANNELS or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB [N,H,W,3], got {frames.dtype} {tuple(frames.shape)}")
    inputs = image_processor(config)(images=list(frames), return_tensors="np")
    return {key: np.asarray(value) for key, value in inputs.items()}


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, as float32 (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


def pool_clip(frame_vectors: np.ndarray) -> np.ndarray:
    """A clip's vector: the mean of its (normalised) frame vectors, renormalised."""
    frame_vectors = np.asarray(frame_vectors, dtype=np.float32)
    if frame_vectors.ndim != 2 or len(frame_vectors) == 0:  # noqa: PLR2004 - [frames, width]
        raise ValueError(f"a clip needs frame vectors [n >= 1, D], got shape {frame_vectors.shape}")
    return normalise(normalise(frame_vectors).mean(axis=0))


class ClipEmbedder:
    """A loaded image-text model: frames or texts in, float32 [n, D] unit vectors out.

    Loads once at construction; keep one per worker process.
    """

    def __init__(self, config: EmbeddingModelConfig | None = None) -> None:
        from transformers import AutoModel, AutoProcessor

        self.config = config or EmbeddingModelConfig()
        if self.config.batch_size < 1:
            raise ValueError(f"EmbeddingModelConfig.batch_size must be >= 1, got {self.config.batch_size}")
        self.device = resolve_device(self.config.device)
        self.dtype = hub.resolve_dtype(self.config.dtype, self.device, config_name="EmbeddingModelConfig")
        weights = self.config.weights()
        model = hub.from_pretrained(weights, AutoModel.from_pretrained, EmbeddingModelUnavailable, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        self.processor = hub.from_pretrained(weights, AutoProcessor.from_pretrained, EmbeddingModelUnavailable)
        # SigLIP was trained on text padded on the right to a fixed length, and its text tower pools
        # the last position: left padding (Gemma's tokenizer default) would pool a pad of another place.
        self.processor.tokenizer.padding_side = "right"
        self.model_id = self.config.model_id
        self.revision = hub.loaded_revision(weights)
        self.width = width_of(self.model.config)
        self.text_length = int(getattr(self.model.config.text_config, "max_position_embeddings", 64))

    def __repr__(self) -> str:
        return (
            f"ClipEmbedder(model_id={self.model_id!r}, revision={self.revision!r}, "
            f"device={str(self.device)!r}, dtype={self.dtype}, width={self.width})"
        )

    def preprocess(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        return preprocess_frames(self.config, frames)

    @torch.inference_mode()
    def embed_inputs(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The image tower over preprocessed frames, `batch_size` at a time: float32 [N, D], unit norm."""
        count = len(next(iter(inputs.values())))
        out = np.empty((count, self.width), dtype=np.float32)
        step = self.config.batch_size
        for start in range(0, count, step):
            batch = {key: self._tensor(value[start : start + step]) for key, value in inputs.items()}
            pooled = self.model.get_image_features(**batch).pooler_output
            out[start : start + step] = pooled.to(torch.float32).cpu().numpy()
        return normalise(out)

    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB [N,H,W,3] -> float32 [N, D], unit norm."""
        return self.embed_inputs(self.preprocess(frames))

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 [n, D], unit norm; lower-cased and padded to the model's fixed length, as
        SigLIP 2 was trained.
        """
        out = np.empty((len(texts), self.width), dtype=np.float32)
        step = self.config.batch_size
        for start in range(0, len(texts), step):
            tokens = self.processor.tokenizer(
                [t.lower() for t in texts[start : start + step]],
                padding="max_length",
                truncation=True,
                max_length=self.text_length,
                return_tensors="pt",
            )
            batch = {key: value.to(self.device) for key, value in tokens.items() if key == "input_ids"}
            pooled = self.model.get_text_features(**batch).pooler_output
            out[start : start + step] = pooled.to(torch.float32).cpu().numpy()
        return normalise(out)

    def _tensor(self, value: np.ndarray) -> torch.Tensor:
        array = np.ascontiguousarray(value)
        if not array.flags.writeable:  # a zero-copy view of Ray's object store; torch needs writable memory
            array = array.copy()
        tensor = torch.from_numpy(array).to(self.device, non_blocking=True)
        return tensor.to(self.dtype) if tensor.is_floating_point() else tensor


@functools.lru_cache(maxsize=2)
def text_embedder(config: EmbeddingModelConfig) -> ClipEmbedder:
    """One loaded model per config and process, for repeated queries."""
    return ClipEmbedder(config)
