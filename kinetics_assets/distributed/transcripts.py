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
from collections.abc import Iterator, Sequence

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


@ray.remote
class SpeechActor:
    """Holds one loaded Whisper; `transcribe` takes a batch of prepared clips."""

    def __init__(self, config: SpeechModelConfig, torch_threads: int | None) -> None:
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.recognizer = SpeechRecognizer(config)

    def info(self) -> dict:
        return self.recognizer.info()

    def transcribe(self, *clips: PreparedClip) -> list[ClipTranscript]:
        return transcribe_prepared(self.recognizer, clips)


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
        preparing: dict = {}  # ref -> job
        ready: list[PreparedClip] = []
        transcribing: dict = {}  # ref -> the clips of that actor call
        next_actor = 0

        def submit() -> None:
            while (
                pending and len(preparing) + len(ready) + sum(map(len, transcribing.values())) < options.max_in_flight
            ):
                job = pending.popleft()
                preparing[_prepare_task.remote(uri, version, storage_options, job, self.vad)] = job

        def dispatch(force: bool) -> None:
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
                    if ref in preparing:
                        job = preparing.pop(ref)
                        try:
                            clip = ray.get(ref)
                        except Exception as exc:  # the task itself died: this video fails, the run goes on
                            yield ClipTranscript(
                                job.video_id, "failed", error=f"{job.video_id}: {type(exc).__name__}: {exc}"[:2000]
                            )
                            continue
                        if clip.status == "speech":
                            ready.append(clip)
                        else:
                            yield settled(clip)
                    else:
                        batch = transcribing.pop(ref)
                        try:
                            yield from ray.get(ref)
                        except Exception as exc:  # the actor call failed: its clips fail with the cause
                            for clip in batch:
                                yield ClipTranscript(
                                    clip.video_id,
                                    "failed",
                                    audio_s=clip.audio_s,
                                    speech_s=clip.speech_s,
                                    error=f"{clip.video_id}: {type(exc).__name__}: {exc}"[:2000],
                                )
        finally:
            for actor in actors:
                ray.kill(actor)
