"""Silero VAD from the package: a voice is speech, a steady tone and silence are not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinetics_assets.media.audio import SPEECH_SAMPLE_RATE, decode_audio
from kinetics_assets.speech.vad import VadConfig, speech_spans
from tests.harness.audio_clips import audio_track, make_av_clip, voice

RATE = SPEECH_SAMPLE_RATE


def test_a_voice_is_heard_where_it_speaks():
    samples = voice(4.0, RATE, start_s=1.5)
    spans = speech_spans(samples)
    assert spans, "the synthetic voice should be heard as speech"
    assert all(0 <= s.start < s.end <= 4.0 for s in spans)
    assert [s.start for s in spans] == sorted(s.start for s in spans)
    assert spans[0].start >= 1.3  # nothing before the voice starts (30 ms padding, 32 ms windows)


@pytest.mark.parametrize("kind", ["silence", "tone"])
def test_silence_and_a_tone_are_not_speech(kind):
    assert speech_spans(audio_track(kind, 5.0, RATE)) == []


def test_through_a_real_clip_decode(tmp_path):
    audio = decode_audio(make_av_clip(tmp_path / "v.mp4", audio="voice", seconds=3.0).read_bytes())
    assert speech_spans(audio.samples)


def test_short_or_empty_input_has_no_speech():
    assert speech_spans(np.zeros(0, np.float32)) == []
    assert speech_spans(voice(0.02, RATE)) == []


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="16000 Hz"):
        speech_spans(np.zeros(16000, np.float32), sample_rate=8000)
    with pytest.raises(ValueError, match="mono"):
        speech_spans(np.zeros((2, 16000), np.float32))
    with pytest.raises(ValueError, match="threshold"):
        VadConfig(threshold=1.5)


def test_a_stricter_threshold_hears_less():
    samples = voice(4.0, RATE, seed=3)
    loose = sum(s.end - s.start for s in speech_spans(samples, config=VadConfig(threshold=0.3)))
    strict = sum(s.end - s.start for s in speech_spans(samples, config=VadConfig(threshold=0.9)))
    assert loose > strict


def test_loading_the_detector_keeps_the_process_thread_count():
    from kinetics_assets.speech import vad

    vad._model = None
    torch.set_num_threads(2)
    speech_spans(voice(1.0, RATE))
    assert torch.get_num_threads() == 2
