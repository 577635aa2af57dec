"""The tiny random SigLIP used by tests (it lives in the package: the demo uses it too)."""

from kinetics_assets.embed.random_model import (
    build_tiny_siglip_tokenizer,
    save_tiny_siglip_model,
    siglip2_base_config,
    tiny_siglip_config,
)

TINY_SIGLIP_ID = "tests/tiny-siglip"

__all__ = [
    "TINY_SIGLIP_ID",
    "build_tiny_siglip_tokenizer",
    "save_tiny_siglip_model",
    "siglip2_base_config",
    "tiny_siglip_config",
]
