"""Whisper speech recognition on clips' audio: model loading, language detection, batched transcription.

Through transformers (`WhisperForConditionalGeneration` and its processor), with the weights found by
the rules of `kinetics_assets.hub`, as for the depth model. Audio is cut into Whisper's 30 s windows;
the windows of many clips are run as one batch, so short clips of different videos fill it. Each
window's language is detected from the first decoder step (its probability comes from the same
softmax Whisper uses to pick it), and each clip is transcribed in the language its windows agree on.
Segment times come from Whisper's timestamp tokens and are clipped to the clip.

This module imports neither dagster nor ray.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from kinetics_assets import hub
from kinetics_assets.hub import WeightsSource, resolve_device
from kinetics_assets.media.audio import SPEECH_SAMPLE_RATE
from kinetics_assets.speech import DEFAULT_MODEL_ID

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

_Window = tuple[int, float, np.ndarray]  # (clip index, offset in s, samples)
WINDOW_S = 30
"""Whisper's input: 30 s of audio (3,000 mel frames), zero-padded."""

_SPECIAL = re.compile(r"<\|[^|]*\|>")


@dataclass(frozen=True)
class SpeechModelConfig:
    """Which Whisper to run, where, and how.

    `local_path` (a `save_pretrained` folder holding the model and its processor) wins over
    `model_id`, which is then only the name reported for lineage. `language=None` detects the
    language of each clip; a code ("en") or name ("english") fixes it and skips detection.
    `task="translate"` writes English text whatever is spoken.
    """

    model_id: str = DEFAULT_MODEL_ID
    revision: str | None = None
    local_path: str | os.PathLike[str] | None = None
    cache_dir: str | os.PathLike[str] | None = None
    device: str = "auto"  # "auto" -> cuda when available, else cpu; or any torch device string
    dtype: str = "auto"  # "auto" -> float16 on cuda, float32 on cpu; or float32/float16/bfloat16
    batch_size: int = 8
    """30 s windows per forward pass."""
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    max_new_tokens: int = 224
    """Bound on tokens per window (OpenAI's own: half the 448-token context)."""

    def weights(self) -> WeightsSource:
        return WeightsSource(
            "Speech model", "SpeechModelConfig", self.model_id, self.revision, self.local_path, self.cache_dir
        )


class SpeechModelUnavailable(Exception):  # noqa: N818 - public name, caught by name in the steps and tests
    """The model's weights are neither on this machine nor reachable on the Hugging Face Hub."""


@dataclass(frozen=True)
class Segment:
    """Seconds from the start of the clip; `start <= end`, within the clip, in order."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """What was said in one clip. `language_probability` is None when the language was fixed."""

    text: str
    language: str | None
    language_probability: float | None
    segments: tuple[Segment, ...]


def check_weights_available(config: SpeechModelConfig) -> None:
    """Raise SpeechModelUnavailable unless the model can be loaded, without loading its weights."""
    hub.check_available(config.weights(), SpeechModelUnavailable)


class SpeechRecognizer:
    """A loaded Whisper: call `transcribe` on clips' 16 kHz mono samples, get transcripts back.

    Loads once at construction; keep one per worker process and reuse it across clips.
    """

    def __init__(self, config: SpeechModelConfig | None = None) -> None:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.config = config or SpeechModelConfig()
        if self.config.batch_size < 1:
            raise ValueError(f"SpeechModelConfig.batch_size must be >= 1, got {self.config.batch_size}")
        if self.config.task not in ("transcribe", "translate"):
            raise ValueError(f"SpeechModelConfig.task={self.config.task!r} is not 'transcribe' or 'translate'")
        self.device = resolve_device(self.config.device)
        self.dtype = hub.resolve_dtype(self.config.dtype, self.device, config_name="SpeechModelConfig")
        source = self.config.weights()
        self.model = (
            hub.from_pretrained(
                source, WhisperForConditionalGeneration.from_pretrained, SpeechModelUnavailable, dtype=self.dtype
            )
            .to(self.device)  # type: ignore[arg-type]  # transformers' wrapper types `to` for a model, not a device
            .eval()
        )
        self.processor = hub.from_pretrained(source, WhisperProcessor.from_pretrained, SpeechModelUnavailable)
        self.model_id = self.config.model_id
        self.revision = hub.loaded_revision(source)
        generation = self.model.generation_config
        self._languages = [token[2:-2] for token in generation.lang_to_id]
        self._language_ids = torch.tensor(list(generation.lang_to_id.values()), device=self.device)
        self._start_id = generation.decoder_start_token_id

    def __repr__(self) -> str:
        return (
            f"SpeechRecognizer(model_id={self.model_id!r}, revision={self.revision!r}, "
            f"device={str(self.device)!r}, dtype={self.dtype})"
        )

    def info(self) -> dict:
        """What was loaded, for lineage and metadata."""
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "device": str(self.device),
            "dtype": str(self.dtype),
        }

    def features(self, windows: Sequence[np.ndarray]) -> torch.Tensor:
        """Log-mel features of up to 30 s windows, padded to 30 s: [N, mels, 3000] on the model's device."""
        extracted = self.processor.feature_extractor(
            list(windows), sampling_rate=SPEECH_SAMPLE_RATE, return_tensors="pt"
        )
        return extracted.input_features.to(self.device, self.dtype)

    @torch.inference_mode()
    def detect_language(self, features: torch.Tensor) -> torch.Tensor:
        """Probabilities [N, languages] of each window's language (order: `self._languages`)."""
        start = torch.full((len(features), 1), self._start_id, device=self.device)
        logits = self.model(input_features=features, decoder_input_ids=start, use_cache=False).logits[:, -1]
        return logits[:, self._language_ids].float().softmax(-1)

    @torch.inference_mode()
    def generate(self, features: torch.Tensor, languages: Sequence[str]) -> list[list[int]]:
        """Token ids (timestamps included) of each window, in the given languages."""
        out = self.model.generate(
            features,
            language=list(languages),
            task=self.config.task,
            return_timestamps=True,
            max_new_tokens=self.config.max_new_tokens,
        )
        return out.tolist()

    def transcribe(self, clips: Sequence[np.ndarray]) -> list[Transcript]:
        """One transcript per clip (float32 mono samples at 16 kHz), its windows batched with the others'."""
        windows: list[_Window] = []
        step = WINDOW_S * SPEECH_SAMPLE_RATE
        for index, clip_samples in enumerate(clips):
            samples = np.asarray(clip_samples, dtype=np.float32)
            if samples.ndim != 1:
                raise ValueError(f"clip {index}: samples must be mono [n], got shape {samples.shape}")
            windows.extend(
                (index, start / SPEECH_SAMPLE_RATE, samples[start : start + step])
                for start in range(0, max(len(samples), 1), step)
            )
        batches = [windows[i : i + self.config.batch_size] for i in range(0, len(windows), self.config.batch_size)]
        features = [self.features([w for _, _, w in batch]) for batch in batches]
        language, probability = self._clip_languages(len(clips), batches, features)
        pieces: list[list[tuple[float, list[int]]]] = [[] for _ in clips]
        for batch, feats in zip(batches, features, strict=True):
            tokens = self.generate(feats, [language[clip] for clip, _, _ in batch])
            for (clip, offset, _), ids in zip(batch, tokens, strict=True):
                pieces[clip].append((offset, ids))
        return [
            self._transcript(pieces[i], len(np.asarray(clips[i])) / SPEECH_SAMPLE_RATE, language[i], probability[i])
            for i in range(len(clips))
        ]

    def _clip_languages(
        self, n: int, batches: list[list[_Window]], features: list[torch.Tensor]
    ) -> tuple[list[str], list[float | None]]:
        """A fixed language, or each clip's most probable one, its windows' probabilities averaged."""
        if self.config.language is not None:
            return [self.config.language] * n, [None] * n
        totals = np.zeros((n, len(self._languages)))
        counts = np.zeros(n)
        for batch, feats in zip(batches, features, strict=True):
            probs = self.detect_language(feats).cpu().numpy()
            for (clip, _, _), p in zip(batch, probs, strict=True):
                totals[clip] += p
                counts[clip] += 1
        mean = totals / np.maximum(counts, 1)[:, None]
        best = mean.argmax(1)
        return [self._languages[b] for b in best], [float(mean[i, b]) for i, b in enumerate(best)]

    def _transcript(
        self, pieces: list[tuple[float, list[int]]], duration: float, language: str, probability: float | None
    ) -> Transcript:
        tokenizer = self.processor.tokenizer
        texts, segments = [], []
        for offset, ids in pieces:
            texts.append(tokenizer.decode(ids, skip_special_tokens=True).strip())
            for found in tokenizer.decode(ids, output_offsets=True)["offsets"]:
                segment = _clipped(found["timestamp"], offset, duration, _SPECIAL.sub("", found["text"]).strip())
                if segment is not None:
                    segments.append(segment)
        return Transcript(" ".join(t for t in texts if t), language, probability, tuple(_ordered(segments)))


def _clipped(stamp: tuple[float, float | None], offset: float, duration: float, text: str) -> Segment | None:
    """A segment on the clip's clock, cut to [0, duration]; None when nothing of it is in the clip or
    it holds no text (Whisper's timestamps can run past the audio's end on padded windows).
    """
    start = offset + float(stamp[0])
    end = offset + float(stamp[1] if stamp[1] is not None else duration - offset)
    start, end = min(max(start, 0.0), duration), min(max(end, 0.0), duration)
    if not text or start >= duration:
        return None
    return Segment(start, max(start, end), text)


def _ordered(segments: list[Segment]) -> list[Segment]:
    """Sorted by start, each ending no later than the next one starts."""
    segments = sorted(segments, key=lambda s: (s.start, s.end))
    out = []
    for i, segment in enumerate(segments):
        end = min(segment.end, segments[i + 1].start) if i + 1 < len(segments) else segment.end
        out.append(Segment(segment.start, max(segment.start, end), segment.text))
    return out
