"""One stored clip's way to a transcript, in the pieces every executor (in-process, Ray) runs alike:
read its audio and gate it on speech (`prepare_clip`, a CPU job), then transcribe the clips that
have speech in batches across videos (`transcribe_prepared`, the model's job).

A clip's status is decided here, once: `no_audio` (no audio stream), `no_speech` (the detector heard
no speech, or Whisper wrote nothing), `failed` (with its cause), else `ok`. The text is empty exactly
when the status is not ok.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kinetics_assets.media.audio import AudioDecodeError, decode_audio
from kinetics_assets.media.transcode import release_av_cycles
from kinetics_assets.speech.vad import VadConfig, speech_spans
from kinetics_assets.table import open_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from lance.blob import BlobFile

    from kinetics_assets.speech.model import SpeechRecognizer, Transcript

TranscriptStatus = Literal["ok", "no_audio", "no_speech", "failed"]
AudioStatus = Literal["speech", "no_audio", "no_speech", "failed"]


@dataclass(frozen=True)
class TranscriptJob:
    """One ok video of the table to transcribe: where its blob is and how long the clip is."""

    video_id: str
    row_id: int
    shard: str
    duration_s: float | None


@dataclass(frozen=True)
class PreparedClip:
    """A clip's audio after the speech gate; `samples` only when speech was heard."""

    video_id: str
    status: AudioStatus
    samples: np.ndarray | None = None
    audio_s: float = 0.0
    speech_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class ClipTranscript:
    """The outcome for one video: `transcript` is set exactly when `status` is ok."""

    video_id: str
    status: TranscriptStatus
    transcript: Transcript | None = None
    error: str | None = None
    audio_s: float = 0.0
    speech_s: float = 0.0


def _video_blob(uri: str, version: int, storage_options: dict | None, row_id: int) -> BlobFile:
    blob = open_table(uri, storage_options, version=version).take_blobs("video", ids=[row_id])[0]
    if blob is None:
        raise ValueError("no video bytes (null blob)")
    return blob


def prepare_clip(
    uri: str, version: int, storage_options: dict | None, job: TranscriptJob, vad: VadConfig
) -> PreparedClip:
    """Read the video's blob at `version`, decode its audio (cut at the clip's end) and look for speech.
    A clip that cannot be read or decoded is a `failed` result with its cause, never an exception.
    """
    try:
        audio = decode_audio(_video_blob(uri, version, storage_options, job.row_id), max_duration_s=job.duration_s)
    except (AudioDecodeError, OSError, ValueError) as exc:
        return PreparedClip(job.video_id, "failed", error=f"{job.video_id}: {type(exc).__name__}: {exc}"[:2000])
    finally:
        release_av_cycles()
    if not audio.has_audio:
        return PreparedClip(job.video_id, "no_audio")
    spans = speech_spans(audio.samples, config=vad)
    speech_s = sum(s.end - s.start for s in spans)
    if not spans:
        return PreparedClip(job.video_id, "no_speech", audio_s=audio.duration_s)
    return PreparedClip(job.video_id, "speech", audio.samples, audio.duration_s, speech_s)


def settled(clip: PreparedClip) -> ClipTranscript:
    """The outcome of a clip the model never sees (no audio, no speech, failed)."""
    if clip.status == "speech":
        raise ValueError(f"{clip.video_id}: a clip with speech is settled by the model")
    return ClipTranscript(clip.video_id, clip.status, error=clip.error, audio_s=clip.audio_s, speech_s=clip.speech_s)


def _speech_samples(clip: PreparedClip) -> np.ndarray:
    if clip.samples is None:
        raise ValueError(f"{clip.video_id}: a clip without speech samples cannot be transcribed")
    return clip.samples


def transcribe_prepared(recognizer: SpeechRecognizer, clips: Sequence[PreparedClip]) -> list[ClipTranscript]:
    """Transcribe clips with speech as one batch. Whisper writing nothing is `no_speech`; a batch the
    model fails on fails each of its clips with the cause (the others are not affected).
    """
    try:
        transcripts = recognizer.transcribe([_speech_samples(c) for c in clips])
    except Exception as exc:  # noqa: BLE001 - recorded per clip as data; the step goes on
        cause = f"{type(exc).__name__}: {exc}"
        return [
            ClipTranscript(
                c.video_id, "failed", error=f"{c.video_id}: {cause}"[:2000], audio_s=c.audio_s, speech_s=c.speech_s
            )
            for c in clips
        ]
    return [
        ClipTranscript(
            c.video_id, "ok" if t.text else "no_speech", t if t.text else None, audio_s=c.audio_s, speech_s=c.speech_s
        )
        for c, t in zip(clips, transcripts, strict=True)
    ]
