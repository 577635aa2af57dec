"""The tiny random Whisper used by tests (it lives in the package: the demo uses it too)."""

from kinetics_assets.speech.random_model import save_tiny_whisper_model

TINY_WHISPER_ID = "tests/tiny-whisper"

__all__ = ["TINY_WHISPER_ID", "save_tiny_whisper_model"]
