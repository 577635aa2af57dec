"""Speech: voice-activity detection and Whisper transcription of a clip's audio."""

DEFAULT_MODEL_ID = "openai/whisper-small"
"""Named here, not in `model`, so that naming the default costs no torch import (the code location's resources)."""
