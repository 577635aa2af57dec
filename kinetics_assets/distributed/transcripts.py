"""Transcripts for many videos on Ray: CPU tasks read the audio and gate it on speech, model actors
run Whisper on batches of clips across videos.

Each video goes to one decode task (blob -> 16 kHz mono -> Silero VAD); a clip without audio or
speech is settled there and never reaches the model. Clips with speech wait until a batch is full
(`batch_size` clips, from any shard of the run) and go to one actor call. The actors load the model
once per run (on a GPU each in float16 when the cluster has GPUs, else on CPU). A bounded number of
videos is in flight, so decoding and inference of different videos overlap.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

import ray

from kinetics_assets.distributed.options import RayTranscriptOptions
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

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence


class _SpeechActor:
    """Holds one loaded Whisper; `transcribe` takes a batch of prepared clips."""

    def __init__(self, config: SpeechModelConfig, torch_threads: int | None) -> None:
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.recognizer = SpeechRecognizer(config)

    @ray.method
    def info(self) -> dict:
        return self.recognizer.info()

    @ray.method
    def transcribe(self, *clips: PreparedClip) -> list[ClipTranscript]:
        return transcribe_prepared(self.recognizer, clips)


# Built with `ray.remote` as a function rather than a class decorator, so type checkers see an
# `ActorClass` (with `.options`) instead of the plain class, and calls on its handles are checked
# against the `@ray.method`s (Ray's "Type hints in Ray" guide).
SpeechActor = ray.remote(_SpeechActor)


@ray.remote(num_cpus=1, max_retries=3)
def _prepare_task(
    uri: str, version: int, storage_options: dict | None, job: TranscriptJob, vad: VadConfig
) -> PreparedClip:
    return prepare_clip(uri, version, storage_options, job, vad)


class RayTranscriber:
    """The `Transcriber` of the transcripts step on Ray (see the module docstring)."""

    def __init__(
        self,
        config: SpeechModelConfig,
        *,
        vad: VadConfig = VadConfig(),
        options: RayTranscriptOptions = RayTranscriptOptions(),
    ) -> None:
        self.config, self.vad, self.options = config, vad, options
        self.model: dict = {}
        self.model_load_s = 0.0

    def _actor_gpus(self) -> float:
        if self.options.actor_num_gpus is not None:
            return self.options.actor_num_gpus
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0

    def run(
        self, jobs: Sequence[TranscriptJob], *, uri: str, version: int, storage_options: dict | None
    ) -> Iterator[ClipTranscript]:
        started = time.monotonic()
        options = self.options
        actors = [
            SpeechActor.options(num_cpus=options.actor_num_cpus, num_gpus=self._actor_gpus()).remote(
                self.config, options.torch_threads
            )
            for _ in range(options.actors)
        ]
        pending = deque(jobs)
        preparing: dict[ray.ObjectRef, TranscriptJob] = {}
        ready: list[PreparedClip] = []
        transcribing: dict[ray.ObjectRef, list[PreparedClip]] = {}  # ref -> the clips of that actor call
        next_actor = 0

        def submit() -> None:
            while (
                pending and len(preparing) + len(ready) + sum(map(len, transcribing.values())) < options.max_in_flight
            ):
                job = pending.popleft()
                preparing[_prepare_task.remote(uri, version, storage_options, job, self.vad)] = job

        def dispatch(*, force: bool) -> None:
            nonlocal next_actor
            while len(ready) >= self.config.batch_size or (force and ready):
                batch = ready[: self.config.batch_size]
                del ready[: len(batch)]
                actor = actors[next_actor % len(actors)]
                next_actor += 1
                transcribing[actor.transcribe.remote(*batch)] = batch

        try:
            submit()  # the first videos decode while the actors start and load the model
            # Loading the model is where missing weights surface: fail the step once, not every video.
            self.model = ray.get(actors[0].info.remote())
            self.model_load_s = time.monotonic() - started
            while pending or preparing or ready or transcribing:
                submit()
                dispatch(force=not pending and not preparing)
                waiting = list(preparing) + list(transcribing)
                if not waiting:  # the window is full of clips waiting for a batch that cannot fill
                    dispatch(force=True)
                    continue
                done, _ = ray.wait(waiting, num_returns=1)
                for ref in done:
                    yield from _collect(ref, preparing=preparing, transcribing=transcribing, ready=ready)
        finally:
            for actor in actors:
                # `.remote()` returns an ActorHandle; Ray's stubs type it `ActorHandle | type[T]`, which
                # `ray.kill`'s own annotation then rejects.
                ray.kill(actor)  # type: ignore[arg-type]


def _collect(
    ref: ray.ObjectRef,
    *,
    preparing: dict[ray.ObjectRef, TranscriptJob],
    transcribing: dict[ray.ObjectRef, list[PreparedClip]],
    ready: list[PreparedClip],
) -> list[ClipTranscript]:
    """The outcomes a finished task or actor call settles; a clip with speech joins `ready` instead."""
    if ref not in preparing:
        return _transcribed(ref, transcribing.pop(ref))
    outcome = _prepared(ref, preparing.pop(ref))
    if isinstance(outcome, PreparedClip):
        ready.append(outcome)
        return []
    return [outcome]


def _prepared(ref: ray.ObjectRef, job: TranscriptJob) -> PreparedClip | ClipTranscript:
    """A clip with speech, to wait for a batch, or the video's outcome when it has none."""
    try:
        clip = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - the task itself died: this video fails, the run goes on
        return ClipTranscript(job.video_id, "failed", error=f"{job.video_id}: {type(exc).__name__}: {exc}"[:2000])
    return clip if clip.status == "speech" else settled(clip)


def _transcribed(ref: ray.ObjectRef, batch: list[PreparedClip]) -> list[ClipTranscript]:
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - the actor call failed: its clips fail with the cause, the run goes on
        return [
            ClipTranscript(
                clip.video_id,
                "failed",
                audio_s=clip.audio_s,
                speech_s=clip.speech_s,
                error=f"{clip.video_id}: {type(exc).__name__}: {exc}"[:2000],
            )
            for clip in batch
        ]
