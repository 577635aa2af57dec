"""Clip embeddings from an image-text model (SigLIP 2 by default): loading, frame and text vectors,
clip pooling, the tiny random stand-in. No Dagster, no Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from kinetics_assets.embed.model import EmbeddingModelConfig

DEFAULT_MODEL_ID = "google/siglip2-base-patch16-224"
"""Named here, not in `model`, so that naming the default costs no torch import (the code location's resources)."""

__all__ = ["DEFAULT_MODEL_ID", "text_query_vector"]


def text_query_vector(text: str, *, config: EmbeddingModelConfig | None = None) -> np.ndarray:
    """One search query through the model's text tower: float32 [D], L2-normalised, comparable by
    cosine with the table's `embedding` column when `config` names the model that made it.
    """
    from kinetics_assets.embed.model import EmbeddingModelConfig, text_embedder  # torch: only when asked

    return text_embedder(config or EmbeddingModelConfig()).embed_texts([text])[0]
