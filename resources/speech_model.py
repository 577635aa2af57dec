"""Which Whisper the `transcripts` asset runs, and on what."""

from pathlib import Path
from typing import TYPE_CHECKING

from kinetics_assets.speech import DEFAULT_MODEL_ID
from resources.hub_model import HubModelResource

if TYPE_CHECKING:
    from kinetics_assets.speech.model import SpeechModelConfig


class SpeechModelResource(HubModelResource):
    """openai/whisper-small by default; see `HubModelResource` for where the weights come from."""

    model_id: str = DEFAULT_MODEL_ID
    language: str | None = None
    """None detects each clip's language; a code ("en") fixes it and skips the detection pass."""

    def resolve_model(self, fallback_folder: Path) -> "tuple[SpeechModelConfig, bool]":
        """The config to load, and whether it is the pre-trained model."""
        # torch and transformers: loaded by the step that needs the model, not by the code location.
        from kinetics_assets.speech.model import SpeechModelConfig, SpeechModelUnavailable, check_weights_available
        from kinetics_assets.speech.random_model import save_random_whisper_model

        config = SpeechModelConfig(**self._weights_fields(), language=self.language)
        return self._resolve(
            config,
            check=check_weights_available,
            unavailable=SpeechModelUnavailable,
            save_random=save_random_whisper_model,
            fallback_folder=fallback_folder,
        )
