"""Generated clips with a chosen audio track: none, silence, a steady tone, or a speech-like voice.

No recording of speech is available offline, so `voice` synthesises one: a glottal pulse train with a
wandering pitch through three vowel formants, in syllables of 120-250 ms separated by short pauses.
Silero VAD hears it as speech and a steady tone or silence as not (tests/speech check both).
"""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Literal

import av
import numpy as np

from kinetics_assets.ops.sample import frame_pattern

AudioKind = Literal["none", "silence", "tone", "voice"]

# (F1, F2, F3) in Hz of a few vowels.
_VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (640, 1190, 2390)]


def _resonate(signal: np.ndarray, freq: float, bandwidth: float, rate: int) -> np.ndarray:
    """A two-pole resonator (one formant), as a convolution with its impulse response
    r^n sin((n+1)w) / sin(w), cut where it has decayed below 1e-4."""
    r, w = np.exp(-np.pi * bandwidth / rate), 2 * np.pi * freq / rate
    n = np.arange(int(np.ceil(np.log(1e-4) / np.log(r))))
    response = r**n * np.sin((n + 1) * w) / np.sin(w)
    return np.convolve(signal, response)[: len(signal)]


def voice(seconds: float, rate: int, seed: int = 0, start_s: float = 0.0) -> np.ndarray:
    """Speech-like float32 PCM: voiced syllables from `start_s` on, silence before."""
    rng = np.random.default_rng(seed)
    total = int(seconds * rate)
    pcm = np.zeros(total, np.float32)
    t = int(start_s * rate)
    while t < total:
        length = int(rng.uniform(0.12, 0.25) * rate)
        n = min(length, total - t)
        pitch = rng.uniform(110, 180) * (1 + 0.1 * np.sin(np.linspace(0, np.pi, n)))
        phase = np.cumsum(pitch / rate)
        pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
        f1, f2, f3 = _VOWELS[rng.integers(len(_VOWELS))]
        sound = sum(_resonate(pulses, f, 80 + 0.05 * f, rate) * g for f, g in ((f1, 1.0), (f2, 0.5), (f3, 0.25)))
        sound *= np.hanning(n)
        pcm[t : t + n] = sound / (np.abs(sound).max() + 1e-9) * 0.5
        t += n + int(rng.uniform(0.03, 0.12) * rate)
    return pcm


def audio_track(kind: AudioKind, seconds: float, rate: int, seed: int = 0) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "silence":
        return np.zeros(int(seconds * rate), np.float32)
    if kind == "tone":
        return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
    return voice(seconds, rate, seed=seed)


def make_av_clip(
    path: Path,
    *,
    audio: AudioKind | np.ndarray = "tone",
    seconds: float = 2.0,
    rate: int = 44100,
    width: int = 64,
    height: int = 48,
    fps: int = 10,
    audio_start_s: float = 0.0,
    seed: int = 0,
) -> Path:
    """An mp4 of H.264 video and (unless `audio` is "none") an AAC mono track of `audio` at `rate`,
    starting `audio_start_s` into the clip."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = audio if isinstance(audio, np.ndarray) else audio_track(audio, seconds, rate, seed)
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = fractions.Fraction(1, fps)
        sound = None
        if pcm is not None:
            sound = out.add_stream("aac", rate=rate)
            sound.layout = "mono"
        for i in range(max(1, round(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, width, height), format="rgb24").reformat(
                format="yuv420p"
            )
            frame.pts, frame.time_base = i, video.codec_context.time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            offset = int(audio_start_s * rate)
            for t0 in range(0, len(pcm), 1024):
                chunk = pcm[t0 : t0 + 1024].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = rate, offset + t0, fractions.Fraction(1, rate)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path
