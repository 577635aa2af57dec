"""A tiny, randomly initialised Whisper (model, tokenizer, feature extractor) saved with `save_pretrained`.

Tests load it through the same `from_pretrained` path production uses, so they exercise the real
loading, feature extraction, language detection, generation and timestamp decoding without the
real checkpoints. The demo falls back to it, loudly and on the record, when the real weights cannot
be had. Its text is noise.

The tokenizer is Whisper's layout on a byte-level vocabulary: the 256 byte tokens, then the special
tokens in Whisper's order (end of text, start of transcript, the 100 language tokens, translate,
transcribe, start of LM, start of previous, no speech, no timestamps), then the 1,501 timestamp
tokens <|0.00|> .. <|30.00|>, which transformers finds as the ids after the last special token.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from kinetics_assets.hub import has_random_weights, mark_random_weights, saved_once

__all__ = [  # has_random_weights too: callers ask the model's own module
    "build_tiny_whisper_tokenizer",
    "has_random_weights",
    "save_random_whisper_model",
    "save_tiny_whisper_model",
    "tiny_whisper_config",
    "whisper_config",
    "whisper_generation_config",
]

_TASKS = ("translate", "transcribe")
_AFTER_LANGUAGES = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)


def _byte_vocab() -> dict[str, int]:
    """GPT-2's byte-to-unicode table: every byte is one printable token, so any text round-trips."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return {chars[b]: b for b in range(256)}


def build_tiny_whisper_tokenizer() -> WhisperTokenizer:
    tokenizer = WhisperTokenizer(vocab=_byte_vocab(), merges=[])
    specials = ["<|startoftranscript|>", *(f"<|{code}|>" for code in LANGUAGES), *_AFTER_LANGUAGES]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    return tokenizer


def _token_id(tokenizer: WhisperTokenizer, token: str) -> int:
    """One token's id (transformers types the call for a list of tokens as well)."""
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise TypeError(f"{token!r} has no single id")
    return found


def tiny_whisper_config(vocab_size: int, tokenizer: WhisperTokenizer) -> WhisperConfig:
    ids = functools.partial(_token_id, tokenizer)
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"),
    )


def whisper_generation_config(tokenizer: WhisperTokenizer) -> GenerationConfig:
    """What Whisper's own checkpoints carry in generation_config.json, for this vocabulary."""
    ids = functools.partial(_token_id, tokenizer)
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"),
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={task: ids(f"<|{task}|>") for task in _TASKS},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=True,
        max_initial_timestamp_index=50,
        begin_suppress_tokens=[ids("Ġ"), ids("<|endoftext|>")],
        suppress_tokens=[],
        max_length=448,
    )


def save_tiny_whisper_model(folder: str | Path, seed: int = 0) -> Path:
    """A seeded random tiny Whisper with its processor and generation config, saved into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_whisper_tokenizer()
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(tiny_whisper_config(len(tokenizer), tokenizer)).eval()
    model.generation_config = whisper_generation_config(tokenizer)
    mark_random_weights(model.config)  # saved in config.json: whoever loads it can tell
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    return folder


def save_random_whisper_model(folder: str | Path) -> Path:
    """The demo's stand-in model, saved once into `folder` and reused."""
    return saved_once(folder, save_tiny_whisper_model)


def whisper_config(size: str) -> WhisperConfig:
    """The architecture of a published Whisper size (random weights: for speed measurements only)."""
    shapes = {  # d_model, encoder layers, decoder layers, heads, mel bins, vocab
        "tiny": (384, 4, 4, 6, 80, 51865),
        "base": (512, 6, 6, 8, 80, 51865),
        "small": (768, 12, 12, 12, 80, 51865),
        "medium": (1024, 24, 24, 16, 80, 51865),
        "large-v3-turbo": (1280, 32, 4, 20, 128, 51866),
    }
    d_model, enc, dec, heads, mels, vocab = shapes[size]
    return WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=mels,
        d_model=d_model,
        encoder_layers=enc,
        decoder_layers=dec,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=4 * d_model,
        decoder_ffn_dim=4 * d_model,
    )
