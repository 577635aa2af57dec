"""Depth for many videos on Ray: CPU tasks decode and encode, model actors run inference.

Each video goes decode task -> one model actor call -> encode task; the videos of every shard of a
run go through one stream, so the model is loaded once per run and batches fill across shards. Short videos are grouped into one
actor call until a batch is full, so the model sees full batches across videos; a long video is
batched inside the actor. A bounded number of videos is in flight, so decoding, inference and
encoding of different videos overlap while memory stays bounded.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import ray

from kinetics_assets.depth.model import DepthEstimator, DepthModelConfig
from kinetics_assets.distributed.options import RayDepthOptions
from kinetics_assets.steps.depth_video import (
    DecodedVideo,
    DepthJob,
    decode_video,
    depth_columns,
    depth_row,
    describe_model,
    provenance,
    require_frames,
)
from kinetics_assets.table import open_table

if TYPE_CHECKING:
    from collections.abc import Iterator

    from kinetics_assets.media.depth_codec import DepthEncoding
    from kinetics_assets.media.sampling import FrameSampling
    from kinetics_assets.steps.depth_stream import DepthRequest


class _DepthActor:
    """Holds one loaded model; `predict` takes the frames of one or more videos."""

    def __init__(self, config: DepthModelConfig, torch_threads: int | None) -> None:
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.estimator = DepthEstimator(config)

    def info(self) -> dict:
        return describe_model(self.estimator)

    def predict(self, *videos: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        sizes = [len(v) for v in videos]
        depth = self.estimator.predict(np.concatenate(videos) if len(videos) > 1 else videos[0])
        parts = np.split(depth, np.cumsum(sizes)[:-1])
        return parts[0] if len(parts) == 1 else tuple(parts)


# Built with `ray.remote` as a function rather than a class decorator, so type checkers see an
# `ActorClass` (with `.options`) instead of the plain class (Ray's "Type hints in Ray" guide).
DepthActor = ray.remote(_DepthActor)


# Workers are recycled after 200 tasks, as the transcode tasks' are: a backstop against leaks in
# native code (BENCHMARKS.md, memory). `num_cpus` is the default; the stream reserves
# `RayDepthOptions.task_num_cpus` per task and passes the same number as the codec's `threads`.
# `threads` is positional: Ray's typed `.remote()` takes positional arguments only.
@ray.remote(num_cpus=1, num_returns=2, max_retries=3, max_calls=200)
def _decode_task(  # noqa: PLR0917 - a Ray task's arguments are positional (see above)
    uri: str, version: int, storage_options: dict | None, job: DepthJob, sampling: FrameSampling, threads: int
) -> tuple[DecodedVideo, np.ndarray]:
    return decode_video(open_table(uri, storage_options, version=version), job, sampling, threads=threads)


@ray.remote(num_cpus=1, max_retries=3, max_calls=200)
def _encode_task(depth: np.ndarray, timestamps: np.ndarray, encoding: DepthEncoding, threads: int) -> dict:
    return depth_columns(depth, timestamps, dataclasses.replace(encoding, threads=threads))


@dataclass(frozen=True, kw_only=True)
class RayDepthExecutor:
    """The depth step's executor on Ray: one `RayDepthStream` per step run."""

    options: RayDepthOptions = RayDepthOptions()

    def stream(self, request: DepthRequest) -> RayDepthStream:
        return RayDepthStream(request, options=self.options)


@dataclass(frozen=True, kw_only=True)
class _Decoded:
    """A decoded video waiting for a model call: its frames stay in the object store."""

    job: DepthJob
    video: DecodedVideo
    frames_ref: ray.ObjectRef


class RayDepthStream:
    """Depth rows of many shards' videos in one stream (`steps.depth_stream.DepthStream` on Ray).

    The model actors start when iteration begins, and are killed when it ends; the first videos
    decode meanwhile.
    """

    def __init__(self, request: DepthRequest, *, options: RayDepthOptions = RayDepthOptions()) -> None:
        self._request, self._options = request, options
        self._config, self._sampling, self._encoding = request.model, request.sampling, request.encoding
        self.model_load_s = 0.0
        self.model: dict = {}
        self._actors: list = []
        self._pending: Iterator[DepthJob] = iter(())
        self._exhausted = False
        self._decoding: dict[ray.ObjectRef, tuple[DepthJob, ray.ObjectRef]] = {}  # meta ref -> (job, frames ref)
        self._ready: deque[_Decoded] = deque()
        self._encoding_refs: dict[ray.ObjectRef, DepthJob] = {}
        self._outbox: deque[dict] = deque()
        self._made_by: dict = {}
        self._next_actor = 0

    def __iter__(self) -> Iterator[dict]:
        started = time.monotonic()
        options = self._options
        self._actors = [
            DepthActor.options(num_cpus=options.actor_num_cpus, num_gpus=options.actor_num_gpus).remote(
                self._config, options.torch_threads
            )
            for _ in range(options.actors)
        ]
        self._pending, self._exhausted = iter(self._request.jobs), False
        try:
            self._submit_decodes()  # the first videos decode while the actors start and load the model
            # Loading the model is where a missing-weights error surfaces: fail the step, not every video.
            self.model = ray.get(self._actors[0].info.remote())
            self.model_load_s = time.monotonic() - started
            self._made_by = provenance(self._sampling, self.model)
            yield from self._stream()
        finally:
            for actor in self._actors:
                ray.kill(actor)

    def _stream(self) -> Iterator[dict]:
        while not self._exhausted or self._decoding or self._ready or self._encoding_refs:
            self._submit_decodes()
            waiting = list(self._decoding) + list(self._encoding_refs)
            if not waiting:
                self._dispatch(force=True)
                continue
            done, _ = ray.wait(waiting, num_returns=1)
            for ref in done:
                if ref in self._decoding:
                    self._on_decoded(ref)
                else:
                    self._on_encoded(ref)
            self._dispatch(force=self._exhausted and not self._decoding)
            while self._outbox:
                yield self._outbox.popleft()

    def _in_flight(self) -> int:
        return len(self._decoding) + len(self._ready) + len(self._encoding_refs)

    def _submit_decodes(self) -> None:
        request = self._request
        while not self._exhausted and self._in_flight() < self._options.max_in_flight:
            job = next(self._pending, None)
            if job is None:
                self._exhausted = True
                return
            cpus = self._options.task_num_cpus
            # Ray's stubs type a `num_returns=2` call as one ref to the tuple; it returns two refs.
            meta_ref, frames_ref = cast(
                "list[ray.ObjectRef]",
                _decode_task.options(num_cpus=cpus).remote(
                    request.uri, request.version, request.storage_options, job, self._sampling, cpus
                ),
            )
            self._decoding[meta_ref] = (job, frames_ref)

    def _on_decoded(self, ref: ray.ObjectRef) -> None:
        job, frames_ref = self._decoding.pop(ref)
        try:
            video = ray.get(ref)
            require_frames(video)
        except Exception as exc:  # noqa: BLE001 - a clip that will not decode is recorded, not raised
            self._outbox.append(depth_row(job, self._made_by, error=exc))
            return
        self._ready.append(_Decoded(job=job, video=video, frames_ref=frames_ref))

    def _on_encoded(self, ref: ray.ObjectRef) -> None:
        job = self._encoding_refs.pop(ref)
        try:
            self._outbox.append(depth_row(job, self._made_by, columns=ray.get(ref)))
        except Exception as exc:  # noqa: BLE001 - inference or encoding failed for this video only: recorded
            self._outbox.append(depth_row(job, self._made_by, error=exc))

    def _dispatch(self, *, force: bool) -> None:
        """Send decoded videos to the model in batches; a batch short of full waits unless `force`."""
        while self._ready:
            group = self._next_group()
            if sum(d.video.frames for d in group) < self._config.batch_size and not force:
                return  # wait for more short videos of this size to fill the batch
            for decoded in group:
                self._ready.remove(decoded)
            self._predict(group)

    def _next_group(self) -> list[_Decoded]:
        """The oldest decoded videos of the first one's frame size, up to a batch of frames: one model
        call stacks its frames into one batch.
        """
        size, batch_size = self._ready[0].video.size, self._config.batch_size
        group: list[_Decoded] = []
        total = 0
        for decoded in self._ready:
            if decoded.video.size != size:
                continue
            if group and total + decoded.video.frames > batch_size:
                break
            group.append(decoded)
            total += decoded.video.frames
        return group

    def _predict(self, group: list[_Decoded]) -> None:
        actor = self._actors[self._next_actor % len(self._actors)]
        self._next_actor += 1
        refs = actor.predict.options(num_returns=len(group)).remote(*(d.frames_ref for d in group))
        refs = [refs] if len(group) == 1 else refs
        for decoded, depth_ref in zip(group, refs, strict=True):
            cpus = self._options.task_num_cpus
            encode_ref = _encode_task.options(num_cpus=cpus).remote(
                depth_ref, decoded.video.timestamps, self._encoding, cpus
            )
            self._encoding_refs[encode_ref] = decoded.job
