"""A tiny, randomly initialised SigLIP (model, image processor, tokenizer) saved with `save_pretrained`.

Tests load it through the same `from_pretrained` path production uses, so they exercise the real
loading, preprocessing, both towers and the pooling without downloading the 375 M-parameter
checkpoint. The demo falls back to it, loudly and on the record, when the real weights cannot be
had. Its vectors are noise (but the same frames give the same vector).

The architecture is the one `google/siglip2-base-patch16-224` loads as (transformers' SigLIP model:
fixed-resolution SigLIP 2 checkpoints use it, with a Gemma tokenizer), only narrower and shallower.
The tokenizer is Gemma's layout built here: its five special tokens, then the 256 byte-fallback
tokens, so any text tokenizes with no download.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GemmaTokenizer, SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

from kinetics_assets.hub import has_random_weights, mark_random_weights, saved_once

__all__ = [  # has_random_weights too: callers ask the model's own module
    "build_tiny_siglip_tokenizer",
    "has_random_weights",
    "save_random_embedding_model",
    "save_siglip_model",
    "save_tiny_siglip_model",
    "siglip2_base_config",
    "tiny_siglip_config",
]

_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")  # Gemma's ids 0-4
TOKENIZER_SIZE = len(_SPECIALS) + 256
TINY_IMAGE_SIZE = 32
TINY_TEXT_LENGTH = 16


def build_tiny_siglip_tokenizer(max_length: int = TINY_TEXT_LENGTH) -> GemmaTokenizer:
    vocab = {token: i for i, token in enumerate(_SPECIALS)}
    vocab |= {f"<0x{byte:02X}>": len(_SPECIALS) + byte for byte in range(256)}
    return GemmaTokenizer(vocab=vocab, merges=[], model_max_length=max_length, padding_side="right")


def tiny_siglip_config() -> SiglipConfig:
    return SiglipConfig(
        text_config={
            "vocab_size": TOKENIZER_SIZE,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": TINY_TEXT_LENGTH,
            "pad_token_id": 0,
            "eos_token_id": 1,
            "bos_token_id": 2,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TINY_IMAGE_SIZE,
            "patch_size": 8,
        },
    )


def siglip2_base_config(vocab_size: int = 256_000) -> SiglipConfig:
    """The google/siglip2-base-patch16-224 architecture (768 wide, 12 layers each tower, 224 px, patch
    16, Gemma's 256,000-token vocabulary), for benchmarks with random weights. A benchmark of the
    image tower may cut the vocabulary (`vocab_size`): it is a lookup table of the text tower only.
    """
    return SiglipConfig(
        text_config={"vocab_size": vocab_size, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2},
        vision_config={"image_size": 224, "patch_size": 16},
    )


def save_siglip_model(
    folder: str | Path, config: SiglipConfig, *, image_size: int, text_length: int, seed: int = 0
) -> Path:
    """A randomly initialised SigLIP of `config`, its image processor and the local tokenizer, saved
    into `folder` (marked random); returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    mark_random_weights(model.config)  # saved in config.json: whoever loads it can tell
    model.save_pretrained(folder)
    processor = SiglipProcessor(
        image_processor=SiglipImageProcessorPil(size={"height": image_size, "width": image_size}),
        tokenizer=build_tiny_siglip_tokenizer(text_length),
    )
    processor.save_pretrained(folder)
    return folder


def save_tiny_siglip_model(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny model and `save_pretrained` it into `folder`; returns the folder."""
    return save_siglip_model(
        folder, tiny_siglip_config(), image_size=TINY_IMAGE_SIZE, text_length=TINY_TEXT_LENGTH, seed=seed
    )


def save_random_embedding_model(folder: str | Path) -> Path:
    """The demo's stand-in model, saved once into `folder` and reused."""
    return saved_once(folder, save_tiny_siglip_model)
