"""The transcripts step for many shards: ok videos -> audio, speech gate, Whisper -> the table's
transcript columns, one commit per shard.

Plain orchestration (no Dagster, no Ray). The work is done by an executor handed in (`Transcriber`):
`InProcessTranscriber` here runs it in this process (tests, small jobs), and
`kinetics_assets.distributed.transcripts.RayTranscriber` on Ray. A re-run overwrites the same
columns, so the step is idempotent; a shard already transcribed with the same model is skipped.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from kinetics_assets import hub
from kinetics_assets.speech.clips import (
    ClipTranscript,
    PreparedClip,
    TranscriptJob,
    prepare_clip,
    settled,
    transcribe_prepared,
)
from kinetics_assets.speech.model import SpeechModelConfig, SpeechRecognizer
from kinetics_assets.speech.vad import VadConfig
from kinetics_assets.steps.checks import (
    EVERY_OK_VIDEO_HAS_TRANSCRIPT_STATUS,
    TRANSCRIPT_SEGMENTS_WITHIN_CLIP,
    TRANSCRIPT_TEXT_EMPTY_WHEN_NOT_OK,
    Verdict,
    Verdicts,
)
from kinetics_assets.steps.failures import ShardFailure
from kinetics_assets.steps.progress import Progress
from kinetics_assets.steps.shard_state import read_shard_state
from kinetics_assets.table import (
    ensure_transcript_columns,
    open_table,
    sql_literal,
    write_transcripts,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import lance

EXAMPLES = 5
"""Transcribed videos a shard's result shows as examples."""
FINAL_STATUSES = ("ok", "no_audio", "no_speech")
"""Outcomes a re-run with the same model would repeat; `failed` is tried again."""


class Transcriber(Protocol):
    """Turns jobs (ok videos of many shards) into one ClipTranscript each, yielded as each finishes.

    The model is loaded once per `run`; a model that cannot be loaded raises from the iteration.
    After the first result, `model` holds model_id, revision, device and dtype, and `model_load_s`
    the seconds spent loading it.
    """

    config: SpeechModelConfig
    model: dict
    model_load_s: float

    def run(
        self, jobs: Sequence[TranscriptJob], *, uri: str, version: int, storage_options: dict | None
    ) -> Iterator[ClipTranscript]: ...


class InProcessTranscriber:
    """The whole pipeline in this process: clips are read and gated one by one, and the clips with
    speech are transcribed `config.batch_size` at a time, across videos and shards.
    """

    def __init__(self, config: SpeechModelConfig, *, vad: VadConfig = VadConfig()) -> None:
        self.config, self.vad = config, vad
        self.model: dict = {}
        self.model_load_s = 0.0
        self._recognizer: SpeechRecognizer | None = None

    def run(
        self, jobs: Sequence[TranscriptJob], *, uri: str, version: int, storage_options: dict | None
    ) -> Iterator[ClipTranscript]:
        if self._recognizer is None:
            started = time.monotonic()
            self._recognizer = SpeechRecognizer(self.config)
            self.model_load_s = time.monotonic() - started
            self.model = self._recognizer.info()
        waiting: list[PreparedClip] = []
        for job in jobs:
            clip = prepare_clip(uri, version, storage_options, job, self.vad)
            if clip.status != "speech":
                yield settled(clip)
                continue
            waiting.append(clip)
            if len(waiting) == self.config.batch_size:
                yield from transcribe_prepared(self._recognizer, waiting)
                waiting = []
        if waiting:
            yield from transcribe_prepared(self._recognizer, waiting)


@dataclass
class TranscriptStepResult:
    shard: str
    videos: int
    counts: dict[str, int]
    """Videos per transcript status (ok, no_audio, no_speech, failed)."""
    failures: list[dict]
    audio_s: float
    speech_s: float
    clips_with_speech: int
    """Videos in which the speech gate heard speech (Whisper may still have written nothing)."""
    languages: dict[str, int]
    """Videos per detected (or fixed) language, of those transcribed ok."""
    examples: list[dict]
    """A few transcribed videos: video_id, language, text."""
    seconds: float
    """From the start of the step to this shard's commit."""
    model_load_s: float
    version: int
    model: dict
    unchanged: bool = False
    """Transcripts were already there from the same model; nothing was written."""
    checks: Verdicts = field(default_factory=dict)


_STATE = [
    "video_id",
    "shard",
    "duration_s",
    "processed_at",
    "transcript_status",
    "transcript_model",
    "transcript_model_revision",
    "transcript_processed_at",
]


def transcripts_step(shard: str, **kwargs: Any) -> TranscriptStepResult:
    """Transcripts for one shard's ok videos, in one commit. Keyword arguments are those of
    `transcript_shards`.
    """
    kwargs.setdefault("skip_committed", False)
    (result,) = transcript_shards([shard], raise_errors=True, **kwargs)
    if not isinstance(result, ShardFailure):
        return result
    raise RuntimeError(result.error)  # not reached: with `raise_errors` a failed shard raises


def transcript_shards(
    shards: Sequence[str],
    *,
    lance_uri: str,
    storage_options: dict | None,
    transcriber: Transcriber,
    pretrained: bool = True,
    skip_committed: bool = True,
    log: Callable[[str], None] = print,
    raise_errors: bool = False,
) -> Iterator[TranscriptStepResult | ShardFailure]:
    """Transcripts for the ok videos of many shards through one `transcriber` run (the model loaded
    once), each shard written in one commit as soon as its last video is done; results in completion
    order.

    A shard with no rows in the table is a ShardFailure (`raise_errors` raises UpstreamMissing). With
    `skip_committed`, a shard whose ok videos all have a final transcript status (ok, no_audio,
    no_speech) from the same model and revision, made after the video, is not done again.
    """
    started = time.monotonic()
    state = read_shard_state(
        shards,
        lance_uri=lance_uri,
        storage_options=storage_options,
        columns=_STATE,
        asset="transcripts",
        add_columns=ensure_transcript_columns,
        raise_errors=raise_errors,
    )
    yield from state.missing
    if state.ds is None:
        return
    ds, by_shard = state.ds, state.rows
    shards = list(by_shard)
    config = transcriber.config
    made_by = (config.model_id, hub.loaded_revision(config.weights()))
    todo: dict[str, int] = {}
    for shard in shards:
        rows = by_shard[shard]
        if skip_committed and rows and all(_has_transcript_from(r, made_by) for r in rows):
            log(f"shard {shard}: transcripts already made by {made_by[0]} for all {len(rows)} ok videos; skipped")
            yield _result(ds, shard, rows=[], started=time.monotonic(), transcriber=None, unchanged=True)
        elif not rows:
            yield _result(ds, shard, rows=[], started=started, transcriber=None)
        else:
            todo[shard] = len(rows)
    jobs = [TranscriptJob(r["video_id"], r["_rowid"], r["shard"], r["duration_s"]) for s in todo for r in by_shard[s]]
    if not jobs:
        return
    log(f"transcripts for {len(jobs)} ok videos of {len(todo)} shard(s) at table version {ds.version}")
    shard_of = {job.video_id: job.shard for job in jobs}
    done: dict[str, list[dict]] = {s: [] for s in todo}
    progress = Progress(log, "transcripts", "video", len(jobs))
    for outcome in transcriber.run(jobs, uri=lance_uri, version=ds.version, storage_options=storage_options):
        shard = shard_of[outcome.video_id]
        done[shard].append(transcript_row(outcome, transcriber.model, pretrained=pretrained))
        if outcome.status == "failed":
            log(f"shard {shard}: transcript failed: {outcome.error}")
        progress.advance()
        if len(done[shard]) < todo[shard]:
            continue
        yield _commit(
            ds,
            shard,
            rows=done.pop(shard),
            started=started,
            transcriber=transcriber,
            lance_uri=lance_uri,
            storage_options=storage_options,
            raise_errors=raise_errors,
        )


def _commit(
    ds: lance.LanceDataset,
    shard: str,
    *,
    rows: list[dict],
    started: float,
    transcriber: Transcriber,
    lance_uri: str,
    storage_options: dict | None,
    raise_errors: bool,
) -> TranscriptStepResult | ShardFailure:
    """A shard's result once its rows are committed; a failed commit fails that shard only."""
    try:
        return _result(
            ds,
            shard,
            rows=rows,
            started=started,
            transcriber=transcriber,
            lance_uri=lance_uri,
            storage_options=storage_options,
        )
    except Exception as exc:
        if raise_errors:
            raise
        return ShardFailure(shard, f"{type(exc).__name__}: shard {shard}: {exc}")


def transcript_row(outcome: ClipTranscript, model: dict, *, pretrained: bool) -> dict:
    """The transcript columns of one video; `audio_s`/`speech_s` travel beside them for the metadata."""
    t = outcome.transcript
    return {
        "video_id": outcome.video_id,
        "transcript_status": outcome.status,
        "transcript_error": outcome.error,
        "transcript_text": t.text if t else "",
        "transcript_language": t.language if t else None,
        "transcript_language_probability": t.language_probability if t else None,
        "transcript_segments": [{"start": s.start, "end": s.end, "text": s.text} for s in t.segments] if t else [],
        "transcript_model": model.get("model_id"),
        "transcript_model_revision": model.get("revision"),
        "transcript_pretrained": pretrained,
        "transcript_processed_at": datetime.now(UTC),
        "audio_s": outcome.audio_s,
        "speech_s": outcome.speech_s,
    }


def _has_transcript_from(row: dict, made_by: tuple[str, str]) -> bool:
    made = row["transcript_processed_at"]
    return (
        row["transcript_status"] in FINAL_STATUSES
        and (row["transcript_model"], row["transcript_model_revision"]) == made_by
        and made is not None
        and row["processed_at"] is not None
        and made >= row["processed_at"]
    )


def _result(
    ds: lance.LanceDataset,
    shard: str,
    *,
    rows: list[dict],
    started: float,
    transcriber: Transcriber | None,
    unchanged: bool = False,
    lance_uri: str = "",
    storage_options: dict | None = None,
) -> TranscriptStepResult:
    """Commit one shard's transcript rows (if any), then check what was committed."""
    version = write_transcripts(lance_uri, rows, storage_options) if rows else ds.version
    committed = open_table(lance_uri, storage_options, version=version) if rows else ds
    counts = dict.fromkeys((*FINAL_STATUSES, "failed"), 0)
    for row in rows:
        counts[row["transcript_status"]] += 1
    ok_rows = [r for r in rows if r["transcript_status"] == "ok"]
    result = TranscriptStepResult(
        shard=shard,
        videos=len(rows),
        counts=counts,
        failures=[
            {"video_id": r["video_id"], "transcript_error": r["transcript_error"]}
            for r in rows
            if r["transcript_status"] == "failed"
        ],
        audio_s=sum(r["audio_s"] for r in rows),
        speech_s=sum(r["speech_s"] for r in rows),
        clips_with_speech=sum(1 for r in rows if r["speech_s"] > 0),
        languages=dict(Counter(r["transcript_language"] for r in ok_rows)),
        examples=[
            {"video_id": r["video_id"], "language": r["transcript_language"], "text": r["transcript_text"]}
            for r in ok_rows[:EXAMPLES]
        ],
        seconds=time.monotonic() - started,
        model_load_s=transcriber.model_load_s if transcriber else 0.0,
        version=version,
        model=dict(transcriber.model) if transcriber else {},
        unchanged=unchanged,
    )
    result.checks = check_shard_transcripts(committed, shard)
    return result


def check_shard_transcripts(ds: lance.LanceDataset, shard: str) -> Verdicts:
    """Read the committed transcripts back and check them against the videos they came from."""
    rows = ds.to_table(
        columns=["video_id", "duration_s", "transcript_status", "transcript_text", "transcript_segments"],
        filter=f"shard = {sql_literal(shard)} AND status = 'ok'",
    ).to_pylist()
    without = [r["video_id"] for r in rows if r["transcript_status"] is None]
    misplaced = [r["video_id"] for r in rows if not _segments_in_clip(r["transcript_segments"] or [], r["duration_s"])]
    text_mismatch = [
        r["video_id"]
        for r in rows
        if r["transcript_status"] is not None and bool(r["transcript_text"]) != (r["transcript_status"] == "ok")
    ]
    return {
        EVERY_OK_VIDEO_HAS_TRANSCRIPT_STATUS.name: Verdict(
            not without, {"ok_videos": len(rows), "without_status": without[:20]}
        ),
        TRANSCRIPT_SEGMENTS_WITHIN_CLIP.name: Verdict(not misplaced, {"problems": misplaced[:20]}),
        TRANSCRIPT_TEXT_EMPTY_WHEN_NOT_OK.name: Verdict(not text_mismatch, {"problems": text_mismatch[:20]}),
    }


def _segments_in_clip(segments: list[dict], duration_s: float | None) -> bool:
    end_of_clip = float("inf") if duration_s is None else duration_s + 1e-3
    previous_end = 0.0
    for s in segments:
        if not (previous_end - 1e-6 <= s["start"] <= s["end"] <= end_of_clip):
            return False
        previous_end = s["end"]
    return True
