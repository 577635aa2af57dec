"""What is said in every ok video: its audio gated by Silero VAD, the clips with speech transcribed by
Whisper in batches across videos, stored as the transcript columns.

A video's status is decided here, once: `no_audio` (no audio stream), `no_speech` (the gate heard
none, or Whisper wrote nothing), `failed` (with its cause), else `ok`; the text is empty exactly when
the status is not ok. Only clips with speech reach the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from kinetics_assets.media.audio import decode_audio
from kinetics_assets.media.transcode import release_av_cycles
from kinetics_assets.speech.vad import VadConfig, speech_spans
from kinetics_assets.stages.contract import ModelStage, Prepared, Resources, VideoTask, as_settings
from kinetics_assets.stages.rows import StageRow, bind, column
from kinetics_assets.stages.transcript_checks import check_shard_transcripts
from kinetics_assets.table import TRANSCRIPT_SCHEMA

if TYPE_CHECKING:
    from collections.abc import Sequence

    import lance
    import numpy as np

    from kinetics_assets.speech.model import SpeechModelConfig, SpeechRecognizer, Transcript
    from kinetics_assets.stages.contract import SettingValue
    from kinetics_assets.steps.checks import Verdicts

__all__ = ["AudioMeta", "TranscriptRow", "TranscriptStage"]


@dataclass(frozen=True, kw_only=True)
class TranscriptRow(StageRow):
    """A video's transcript columns; `audio_s` and `speech_s` go to the shard's summary only."""

    prefix: ClassVar[str] = "transcript"
    schema: ClassVar = TRANSCRIPT_SCHEMA
    video_id: str
    status: str
    error: str | None = None
    text: str = column(default="")
    language: str | None = column()
    language_probability: float | None = column()
    segments: Sequence[dict[str, float | str]] = column(default=())
    audio_s: float = 0.0
    speech_s: float = 0.0


bind(TranscriptRow, model=True)


@dataclass(frozen=True, kw_only=True)
class AudioMeta:
    audio_s: float
    speech_s: float


@dataclass(frozen=True, kw_only=True)
class TranscriptStage(ModelStage[TranscriptRow, AudioMeta, "np.ndarray", "Transcript"]):
    name: ClassVar[str] = "transcripts"
    asset: ClassVar[str] = "transcripts"
    row_type: ClassVar = TranscriptRow
    statuses: ClassVar = ("ok", "no_audio", "no_speech", "failed")
    default_in_flight: ClassVar[int] = 32
    """A 10 s clip's audio is 640 KB."""

    model: SpeechModelConfig
    vad: VadConfig = VadConfig()
    resources: Resources = Resources()
    pretrained: bool = True

    def settings(self) -> dict[str, SettingValue]:
        return self.model_settings() | as_settings(
            language=self.model.language,
            task=self.model.task,
            max_new_tokens=self.model.max_new_tokens,
            vad=f"{self.vad.describe()} min_silence={self.vad.min_silence_s:g}s pad={self.vad.pad_s:g}s",
        )

    def load_model(self) -> SpeechRecognizer:
        from kinetics_assets.speech.model import SpeechRecognizer  # torch: on the model worker only

        return SpeechRecognizer(self.model)

    def prepare(self, task: VideoTask) -> Prepared[AudioMeta, np.ndarray] | TranscriptRow:
        try:
            audio = decode_audio(task.snapshot.video(task.row_id), max_duration_s=task.duration_s)
        finally:
            release_av_cycles()
        if not audio.has_audio:
            return TranscriptRow(video_id=task.video_id, status="no_audio")
        spans = speech_spans(audio.samples, config=self.vad)
        if not spans:
            return TranscriptRow(video_id=task.video_id, status="no_speech", audio_s=audio.duration_s)
        meta = AudioMeta(audio_s=audio.duration_s, speech_s=sum(s.end - s.start for s in spans))
        return Prepared(task=task, meta=meta, payload=audio.samples)

    def infer(self, payloads: Sequence[np.ndarray]) -> list[Transcript]:
        return self.loaded.transcribe(list(payloads))

    def finish(self, prepared: Prepared[AudioMeta, None], output: Transcript) -> TranscriptRow:
        video_id, meta = prepared.task.video_id, prepared.meta
        if not output.text:  # Whisper wrote nothing
            return TranscriptRow(video_id=video_id, status="no_speech", audio_s=meta.audio_s, speech_s=meta.speech_s)
        return TranscriptRow(
            video_id=video_id,
            status="ok",
            text=output.text,
            language=output.language,
            language_probability=output.language_probability,
            segments=[{"start": s.start, "end": s.end, "text": s.text} for s in output.segments],
            audio_s=meta.audio_s,
            speech_s=meta.speech_s,
        )

    def failed_row(self, task: VideoTask, error: str) -> TranscriptRow:
        return TranscriptRow(video_id=task.video_id, status="failed", error=error)

    def check(self, ds: lance.LanceDataset, shard: str) -> Verdicts:
        return check_shard_transcripts(ds, shard)
