"""Which image-text model the `clip_embeddings` asset runs, and on what."""

from pathlib import Path
from typing import TYPE_CHECKING

from kinetics_assets.embed import DEFAULT_MODEL_ID
from resources.hub_model import HubModelResource

if TYPE_CHECKING:
    from kinetics_assets.embed.model import EmbeddingModelConfig


class EmbeddingModelResource(HubModelResource):
    """SigLIP 2 (google/siglip2-base-patch16-224) by default; see `HubModelResource` for where the
    weights come from. `batch_size` counts frames per forward pass.
    """

    model_id: str = DEFAULT_MODEL_ID
    batch_size: int = 32

    def resolve_model(self, fallback_folder: Path) -> "tuple[EmbeddingModelConfig, bool]":
        """The config to load, and whether it is the pre-trained model."""
        # torch and transformers: loaded by the step that needs the model, not by the code location.
        from kinetics_assets.embed.model import EmbeddingModelConfig, EmbeddingModelUnavailable, check_weights_available
        from kinetics_assets.embed.random_model import save_random_embedding_model

        return self._resolve(
            EmbeddingModelConfig(**self._weights_fields()),
            check=check_weights_available,
            unavailable=EmbeddingModelUnavailable,
            save_random=save_random_embedding_model,
            fallback_folder=fallback_folder,
        )
