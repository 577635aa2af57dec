"""Whisper through transformers: loading (saved folder, missing weights), language, batching, segments.

The model is a tiny random Whisper saved with `save_pretrained` (kinetics_assets/speech/random_model.py),
loaded through the same `from_pretrained` path as production; its text is noise, its structure real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from kinetics_assets.media.audio import SPEECH_SAMPLE_RATE
from kinetics_assets.speech.model import (
    DEFAULT_MODEL_ID,
    SpeechModelConfig,
    SpeechModelUnavailable,
    SpeechRecognizer,
    check_weights_available,
)
from kinetics_assets.speech.random_model import has_random_weights
from tests.harness.audio_clips import voice
from tests.harness.tiny_whisper import TINY_WHISPER_ID, save_tiny_whisper_model

REPO_ROOT = Path(__file__).resolve().parents[2]
RATE = SPEECH_SAMPLE_RATE


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return save_tiny_whisper_model(tmp_path_factory.mktemp("tiny_whisper"))


@pytest.fixture(scope="module")
def recognizer(tiny_folder) -> SpeechRecognizer:
    return SpeechRecognizer(
        SpeechModelConfig(
            model_id=TINY_WHISPER_ID, local_path=tiny_folder, batch_size=3, device="cpu", max_new_tokens=24
        )
    )


def test_loads_saved_folder_through_config(recognizer, tiny_folder):
    assert recognizer.model_id == TINY_WHISPER_ID
    assert recognizer.revision == "local"
    assert recognizer.device == torch.device("cpu")
    assert recognizer.dtype == torch.float32
    assert type(recognizer.model).__name__ == "WhisperForConditionalGeneration"
    assert not recognizer.model.training
    assert has_random_weights(tiny_folder)
    check_weights_available(SpeechModelConfig(local_path=tiny_folder))


def test_missing_local_folder_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(SpeechModelUnavailable, match=r"Speech model .*no-such-model.*SpeechModelConfig.local_path"):
        SpeechRecognizer(SpeechModelConfig(local_path=tmp_path / "no-such-model"))
    with pytest.raises(SpeechModelUnavailable, match="no-such-model"):
        check_weights_available(SpeechModelConfig(local_path=tmp_path / "no-such-model"))


def test_bad_settings_are_named(tiny_folder):
    with pytest.raises(ValueError, match=r"SpeechModelConfig\.dtype='float8'"):
        SpeechRecognizer(SpeechModelConfig(local_path=tiny_folder, dtype="float8"))
    with pytest.raises(ValueError, match="batch_size"):
        SpeechRecognizer(SpeechModelConfig(local_path=tiny_folder, batch_size=0))
    with pytest.raises(ValueError, match="task"):
        SpeechRecognizer(SpeechModelConfig(local_path=tiny_folder, task="summarise"))


_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json
    from kinetics_assets.speech.model import SpeechModelConfig, SpeechModelUnavailable, SpeechRecognizer, check_weights_available
    result = {}
    for name, call in (("load", SpeechRecognizer), ("check", check_weights_available)):
        try:
            call(SpeechModelConfig())
            result[name] = "loaded"
        except SpeechModelUnavailable as exc:
            result[name] = str(exc)
    print("RESULT" + json.dumps(result))
    """
)


@pytest.mark.e2e  # a fresh process: the Hub reads its settings once, at import
def test_missing_weights_offline_name_the_model(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path / "empty_hf_home"), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    for message in result.values():
        assert message.startswith(f"Speech model {DEFAULT_MODEL_ID!r}")
        assert f"hf download {DEFAULT_MODEL_ID}" in message
        assert "HF_HUB_OFFLINE" in message
        assert "SpeechModelConfig.local_path" in message


def _check_segments(transcript, duration: float) -> None:
    starts = [s.start for s in transcript.segments]
    assert starts == sorted(starts)
    for segment, following in zip(transcript.segments, (*transcript.segments[1:], None), strict=True):
        assert 0.0 <= segment.start <= segment.end <= duration
        assert following is None or segment.end <= following.start
        assert segment.text
        assert "<|" not in segment.text


def test_transcripts_have_a_detected_language_and_segments_within_the_clip(recognizer):
    clips = [voice(3.0, RATE, seed=1), voice(7.5, RATE, seed=2)]
    out = recognizer.transcribe(clips)
    assert len(out) == 2
    for transcript, clip in zip(out, clips, strict=True):
        assert transcript.language in recognizer._languages
        assert 0.0 < transcript.language_probability <= 1.0
        assert isinstance(transcript.text, str)
        assert "<|" not in transcript.text
        _check_segments(transcript, len(clip) / RATE)


def test_a_clip_longer_than_a_window_is_transcribed_in_windows_on_its_own_clock(recognizer):
    clip = voice(65.0, RATE, seed=4)  # three windows: 0-30, 30-60, 60-65 s
    (transcript,) = recognizer.transcribe([clip])
    _check_segments(transcript, 65.0)
    assert transcript.segments
    assert transcript.segments[-1].start >= 60.0  # the last window's segments are offset


def test_a_fixed_language_skips_detection(tiny_folder):
    fixed = SpeechRecognizer(SpeechModelConfig(local_path=tiny_folder, language="de", max_new_tokens=8))
    (transcript,) = fixed.transcribe([voice(2.0, RATE)])
    assert transcript.language == "de"
    assert transcript.language_probability is None


def test_batching_across_clips_gives_each_clip_its_own_result(recognizer):
    clips = [voice(2.0, RATE, seed=5), np.zeros(3 * RATE, np.float32), voice(4.0, RATE, seed=6)]
    together = recognizer.transcribe(clips)
    alone = [recognizer.transcribe([c])[0] for c in clips]
    for a, b in zip(together, alone, strict=True):
        assert a.language == b.language
        assert a.language_probability == pytest.approx(b.language_probability, rel=1e-4)
        assert a.text == b.text


def test_rejects_non_mono(recognizer):
    with pytest.raises(ValueError, match="mono"):
        recognizer.transcribe([np.zeros((2, 100), np.float32)])
