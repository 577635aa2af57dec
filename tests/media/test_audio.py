"""Decoding a clip's audio track to 16 kHz mono float32: tone, silence, no track, late start, corrupt bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from kinetics_assets.media.audio import SPEECH_SAMPLE_RATE, AudioDecodeError, decode_audio
from tests.harness.audio_clips import make_av_clip


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def test_tone_is_resampled_to_16k_mono_and_keeps_its_pitch(tmp_path):
    clip = make_av_clip(tmp_path / "tone.mp4", audio="tone", seconds=2.0, rate=44100)
    audio = decode_audio(clip.read_bytes())
    assert audio.has_audio
    assert audio.sample_rate == SPEECH_SAMPLE_RATE
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert abs(audio.duration_s - 2.0) < 0.1
    middle = audio.samples[4000:28000]
    assert abs(_dominant_hz(middle, SPEECH_SAMPLE_RATE) - 440) < 2
    assert 0.25 < np.abs(middle).max() < 0.35  # the 0.3 amplitude, not rescaled


def test_48k_source_and_file_objects_and_paths(tmp_path):
    clip = make_av_clip(tmp_path / "tone48.mp4", audio="tone", seconds=1.0, rate=48000)
    from_path = decode_audio(clip)
    from_file = decode_audio(io.BytesIO(clip.read_bytes()))
    np.testing.assert_array_equal(from_path.samples, from_file.samples)
    assert abs(from_path.duration_s - 1.0) < 0.1


def test_silence_decodes_to_zeros(tmp_path):
    audio = decode_audio(make_av_clip(tmp_path / "s.mp4", audio="silence", seconds=1.5).read_bytes())
    assert audio.has_audio
    assert abs(audio.duration_s - 1.5) < 0.1
    assert np.abs(audio.samples).max() < 1e-4


def test_no_audio_stream_is_a_result_not_an_error(tmp_path):
    audio = decode_audio(make_av_clip(tmp_path / "n.mp4", audio="none").read_bytes())
    assert audio.has_audio is False
    assert audio.samples.size == 0
    assert audio.duration_s == 0.0


def test_late_audio_is_placed_on_the_clip_clock_and_cut_at_the_clip_end(tmp_path):
    clip = make_av_clip(tmp_path / "late.mp4", audio="tone", seconds=2.0, audio_start_s=0.5)
    audio = decode_audio(clip.read_bytes(), max_duration_s=2.0)
    assert audio.duration_s == pytest.approx(2.0, abs=1 / SPEECH_SAMPLE_RATE)
    rate = SPEECH_SAMPLE_RATE
    assert np.abs(audio.samples[: int(0.45 * rate)]).max() < 1e-4  # silence before the track starts
    assert np.abs(audio.samples[int(0.6 * rate) :]).max() > 0.25


@pytest.mark.parametrize("data", [b"", b"not a video at all" * 50])
def test_corrupt_bytes_raise_a_named_error(data):
    with pytest.raises(AudioDecodeError, match="audio could not be decoded"):
        decode_audio(data)


def test_truncated_clip_raises_a_named_error(tmp_path):
    # The generated mp4 has its index (moov) at the end, so its first third is unreadable.
    data = make_av_clip(tmp_path / "t.mp4", audio="tone", seconds=2.0).read_bytes()
    with pytest.raises(AudioDecodeError):
        decode_audio(data[: len(data) // 3])
