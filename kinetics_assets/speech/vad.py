"""Is anyone speaking, and when: Silero VAD on 16 kHz mono samples, before anything is transcribed.

Whisper writes text for every input, music and silence included ("Thank you.", subtitles credits), so
clips are only transcribed where a voice-activity detector hears speech. Silero VAD (MIT) ships its
model inside its wheel (`silero_vad/data/silero_vad.jit`, ~2 MB): nothing is downloaded, and it runs
on one CPU thread. The model is loaded once per process and shared under a lock (it carries state
between its 32 ms windows, reset per clip).

It runs one 32 ms window per call, hundreds of tiny calls per clip, so torch's intra-op threads only
cost: with 2 threads on 2 busy cores, 10 s of audio took 44 s against 1.7 s with one thread. Each
call therefore runs with one thread and puts the process's count back afterwards.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from kinetics_assets.media.audio import SPEECH_SAMPLE_RATE

if TYPE_CHECKING:
    from collections.abc import Iterator

_model: torch.nn.Module | None = None
_WINDOW_SAMPLES = 512  # Silero's window at 16 kHz: shorter audio holds no window
_lock = threading.Lock()


@dataclass(frozen=True)
class VadConfig:
    """Silero's own defaults: a 32 ms window is speech above `threshold`; shorter bursts than
    `min_speech_s` are dropped and gaps shorter than `min_silence_s` are bridged.
    """

    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.1
    pad_s: float = 0.03

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"VadConfig.threshold must be in (0, 1), got {self.threshold}")

    def describe(self) -> str:
        return f"silero-vad threshold={self.threshold:g} min_speech={self.min_speech_s:g}s"


@dataclass(frozen=True)
class SpeechSpan:
    """Seconds from the start of the clip."""

    start: float
    end: float


def _silero() -> torch.nn.Module:
    """The packaged Silero model, loaded once. Importing silero_vad sets torch's thread count to 1
    for the whole process; the count is put back so a model sharing the process keeps its threads.
    """
    global _model  # noqa: PLW0603 - the one loaded model, which the tests reset
    if _model is None:
        threads = torch.get_num_threads()
        try:
            from silero_vad import load_silero_vad

            _model = load_silero_vad()
        finally:
            torch.set_num_threads(threads)
    return _model


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def speech_spans(
    samples: np.ndarray, *, config: VadConfig = VadConfig(), sample_rate: int = SPEECH_SAMPLE_RATE
) -> list[SpeechSpan]:
    """Where speech is in `samples` (float32 mono at 16 kHz), in order; empty when none is heard."""
    if sample_rate != SPEECH_SAMPLE_RATE:
        raise ValueError(f"Silero VAD here takes {SPEECH_SAMPLE_RATE} Hz audio, got {sample_rate}")
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"samples must be mono [n], got shape {samples.shape}")
    if samples.size < _WINDOW_SAMPLES:
        return []
    from silero_vad import get_speech_timestamps

    audio = torch.from_numpy(np.ascontiguousarray(samples))
    with _lock, _one_torch_thread(), torch.inference_mode():
        found = get_speech_timestamps(
            audio,
            _silero(),
            threshold=config.threshold,
            sampling_rate=sample_rate,
            min_speech_duration_ms=round(config.min_speech_s * 1000),
            min_silence_duration_ms=round(config.min_silence_s * 1000),
            speech_pad_ms=round(config.pad_s * 1000),
        )
    return [SpeechSpan(span["start"] / sample_rate, span["end"] / sample_rate) for span in found]
