"""The audio track of a stored video, decoded to what speech models take: float32 mono at 16 kHz.

Samples are placed on the video's clock (sample 0 is time 0 of the container), so times a speech
model reports are times in the clip; an audio track that starts late is padded with silence.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import av
import numpy as np

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import InputContainer

SPEECH_SAMPLE_RATE = 16_000
"""What Whisper and Silero VAD were trained on."""


class AudioDecodeError(ValueError):
    """The container or its audio track could not be read (the cause is chained)."""


@dataclass(frozen=True)
class DecodedAudio:
    """A clip's audio as float32 mono in [-1, 1]; `has_audio` False when the container has no audio
    stream (then `samples` is empty).
    """

    samples: np.ndarray
    sample_rate: int
    has_audio: bool

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def decode_audio(
    source: bytes | BinaryIO | io.BufferedIOBase | str | os.PathLike[str],
    *,
    sample_rate: int = SPEECH_SAMPLE_RATE,
    max_duration_s: float | None = None,
) -> DecodedAudio:
    """Decode the first audio stream of `source`, downmixed and resampled by FFmpeg's resampler.

    `max_duration_s` cuts the samples at the end of the clip (an audio track may outlast its video).
    Raises AudioDecodeError when the bytes are not a readable container or the track fails to decode.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, os.PathLike):
        source = os.fspath(source)
    limit = None if max_duration_s is None else max(0, round(max_duration_s * sample_rate))
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.audio:
                return DecodedAudio(np.zeros(0, np.float32), sample_rate, has_audio=False)
            parts, lead = _resampled(container, container.streams.audio[0], sample_rate, limit)
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"audio could not be decoded: {type(exc).__name__}: {exc}") from exc
    samples = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    samples = _on_clip_clock(samples, lead, sample_rate)
    if limit is not None:
        samples = samples[:limit]
    return DecodedAudio(np.ascontiguousarray(samples), sample_rate, has_audio=True)


def _resampled(
    container: InputContainer, stream: AudioStream, sample_rate: int, limit: int | None
) -> tuple[list[np.ndarray], float]:
    """The stream's samples in parts, and the time of its first frame (0 when unknown); decoding
    stops once `limit` samples past the clip's start are in.
    """
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    parts: list[np.ndarray] = []
    have = 0
    lead: float | None = None
    for frame in container.decode(stream):
        if lead is None:
            lead = float(frame.time) if frame.time is not None else 0.0
        for out in resampler.resample(frame):
            parts.append(out.to_ndarray().reshape(-1))
            have += parts[-1].size
        if limit is not None and have >= limit + round(max(lead, 0.0) * sample_rate):
            break
    else:
        parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return parts, lead or 0.0


def _on_clip_clock(samples: np.ndarray, start_s: float, sample_rate: int) -> np.ndarray:
    """Shift samples so index 0 is time 0: pad a late start with silence, drop what precedes 0."""
    offset = round(start_s * sample_rate)
    if offset > 0:
        return np.concatenate([np.zeros(offset, np.float32), samples])
    return samples[-offset:] if offset < 0 else samples
