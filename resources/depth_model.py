"""Which depth model the `depth_maps` asset runs, and on what."""

from pathlib import Path
from typing import TYPE_CHECKING

from kinetics_assets.depth import DEFAULT_MODEL_ID
from resources.hub_model import HubModelResource

if TYPE_CHECKING:
    from kinetics_assets.depth.model import DepthModelConfig


class DepthModelResource(HubModelResource):
    """Depth Anything V2 by default; see `HubModelResource` for where the weights come from."""

    model_id: str = DEFAULT_MODEL_ID
    input_short_side: int = 518

    def resolve_model(self, fallback_folder: Path) -> "tuple[DepthModelConfig, bool]":
        """The config to load, and whether it is the pre-trained model."""
        # torch and transformers: loaded by the step that needs the model, not by the code location.
        from kinetics_assets.depth.model import DepthModelConfig, DepthModelUnavailable, check_weights_available
        from kinetics_assets.depth.random_model import save_random_depth_model

        config = DepthModelConfig(**self._weights_fields(), input_short_side=self.input_short_side)
        return self._resolve(
            config,
            check=check_weights_available,
            unavailable=DepthModelUnavailable,
            save_random=save_random_depth_model,
            fallback_folder=fallback_folder,
        )
