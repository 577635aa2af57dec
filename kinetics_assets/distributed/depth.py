"""Depth for many videos on Ray: CPU tasks decode and encode, model actors run inference.

Each video goes decode task -> one model actor call -> encode task; the videos of every shard of a
run go through one stream, so the model is loaded once per run and batches fill across shards. Short videos are grouped into one
actor call until a batch is full, so the model sees full batches across videos; a long video is
batched inside the actor. A bounded number of videos is in flight, so decoding, inference and
encoding of different videos overlap while memory stays bounded.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import ray

from kinetics_assets.media.depth_codec import DepthEncoding, encode_depth
from kinetics_assets.depth.model import DepthEstimator, DepthModelConfig
from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.media.transcode import release_av_cycles
from kinetics_assets.table.video_table import open_table


@dataclass(frozen=True)
class DepthJob:
    video_id: str
    row_id: int
    shard: str = ""


@dataclass(frozen=True)
class RayDepthOptions:
    actors: int = 1
    actor_num_cpus: float = 0.0
    """CPUs a model actor holds for its whole life. 0 (Ray's default for actors) so that actors of
    several shards never hold every CPU and starve the decode and encode tasks they wait on."""
    actor_num_gpus: float = 0.0
    torch_threads: int | None = None
    max_in_flight: int = 4
    """Videos between decode and encode at once; bounds memory (frames are large)."""


@ray.remote
class DepthActor:
    """Holds one loaded model; `predict` takes the frames of one or more videos."""

    def __init__(self, config: DepthModelConfig, torch_threads: int | None) -> None:
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.estimator = DepthEstimator(config)

    def info(self) -> dict:
        e = self.estimator
        return {"model_id": e.model_id, "revision": e.revision, "device": str(e.device), "dtype": str(e.dtype)}

    def predict(self, *videos: np.ndarray):
        sizes = [len(v) for v in videos]
        depth = self.estimator.predict(np.concatenate(videos) if len(videos) > 1 else videos[0])
        parts = np.split(depth, np.cumsum(sizes)[:-1])
        return parts[0] if len(parts) == 1 else tuple(parts)


@ray.remote(num_cpus=1, num_returns=2, max_retries=3)
def _decode_task(uri: str, version: int, storage_options: dict | None, job: DepthJob, sampling: FrameSampling):
    ds = open_table(uri, storage_options, version=version)
    blob = ds.take_blobs("video", ids=[job.row_id])[0]
    data = blob.read()
    indices = sampling.indices(frame_timestamps(data))
    frames, times = decode_frames(data, indices)
    release_av_cycles()
    return {"frames": len(frames), "size": tuple(frames.shape[1:3]), "timestamps": times}, frames


@ray.remote(num_cpus=1, max_retries=3)
def _encode_task(depth: np.ndarray, timestamps: np.ndarray, encoding: DepthEncoding) -> dict:
    encoded = encode_depth(depth, timestamps, encoding)
    release_av_cycles()
    return {
        "depth": encoded.data,
        "depth_lo": encoded.lo,
        "depth_hi": encoded.hi,
        "depth_frames": encoded.frames,
        "depth_width": encoded.width,
        "depth_height": encoded.height,
        "depth_timestamps": [float(t) for t in encoded.timestamps],
        "depth_encoding": encoded.encoding,
    }


class DepthRun:
    """Depth rows (one per job, `depth_status` ok or failed) for the table's depth columns, yielded
    as each video finishes, jobs of many shards in one stream.

    The model actors start once, when iteration begins, and are killed when it ends; the first
    videos decode meanwhile. A model that cannot be loaded raises from the iteration (it would fail
    every video). After iteration: `frames`, `seconds`, `model_load_s` (the part of `seconds` spent
    starting the actors and loading the model) and `model` (id, revision, device, dtype)."""

    def __init__(
        self,
        jobs: Iterable[DepthJob],
        *,
        uri: str,
        version: int,
        storage_options: dict | None,
        model: DepthModelConfig,
        sampling: FrameSampling,
        encoding: DepthEncoding,
        options: RayDepthOptions = RayDepthOptions(),
    ) -> None:
        self._jobs = jobs
        self._table = (uri, version, storage_options)
        self._config, self._sampling, self._encoding, self._options = model, sampling, encoding, options
        self.frames = 0
        self.seconds = 0.0
        self.model_load_s = 0.0
        self.model: dict = {}

    def __iter__(self) -> Iterator[dict]:
        started = time.monotonic()
        options, sampling, encoding = self._options, self._sampling, self._encoding
        uri, version, storage_options = self._table
        actors = [
            DepthActor.options(num_cpus=options.actor_num_cpus, num_gpus=options.actor_num_gpus).remote(
                self._config, options.torch_threads
            )
            for _ in range(options.actors)
        ]
        try:
            yield from self._stream(actors, uri, version, storage_options, sampling, encoding, started)
        finally:
            for actor in actors:
                ray.kill(actor)
            self.seconds = time.monotonic() - started

    def _stream(self, actors, uri, version, storage_options, sampling, encoding, started) -> Iterator[dict]:
        options, batch_size = self._options, self._config.batch_size
        outbox: deque = deque()
        common: dict = {}

        def finish(job: DepthJob, row: dict | None, error: BaseException | None) -> None:
            out = {"video_id": job.video_id, **common, "depth_processed_at": datetime.now(timezone.utc)}
            if error is None:
                out.update(row, depth_status="ok")
                self.frames += row["depth_frames"]
            else:
                out.update(depth_status="failed", depth_error=f"{job.video_id}: {type(error).__name__}: {error}"[:2000])
            outbox.append(out)

        pending = iter(self._jobs)
        exhausted = False
        decoding: dict = {}  # meta ref -> (job, frames ref)
        ready: deque = deque()  # (job, meta, frames ref) decoded, waiting for an actor call
        encoding_refs: dict = {}  # encode ref -> job
        next_actor = 0

        def in_flight() -> int:
            return len(decoding) + len(ready) + len(encoding_refs)

        def submit_decodes() -> None:
            nonlocal exhausted
            while not exhausted and in_flight() < options.max_in_flight:
                job = next(pending, None)
                if job is None:
                    exhausted = True
                    return
                meta_ref, frames_ref = _decode_task.remote(uri, version, storage_options, job, sampling)
                decoding[meta_ref] = (job, frames_ref)

        submit_decodes()  # the first videos decode while the actors start and load the model
        # Loading the model is where a missing-weights error surfaces: fail the step, not every video.
        self.model = ray.get(actors[0].info.remote())
        self.model_load_s = time.monotonic() - started
        common.update({
            "depth_sampling": sampling.describe(),
            "depth_model": self.model["model_id"],
            "depth_model_revision": self.model["revision"],
        })

        def dispatch(force: bool) -> None:
            nonlocal next_actor
            while ready:
                # One model call stacks its frames into one batch: only videos of one frame size.
                size = ready[0][1]["size"]
                group, total = [], 0
                for entry in ready:
                    if entry[1]["size"] != size:
                        continue
                    if group and total + entry[1]["frames"] > batch_size:
                        break
                    group.append(entry)
                    total += entry[1]["frames"]
                if total < batch_size and not force:
                    return  # wait for more short videos of this size to fill the batch
                for entry in group:
                    ready.remove(entry)
                actor = actors[next_actor % len(actors)]
                next_actor += 1
                refs = actor.predict.options(num_returns=len(group)).remote(*(f for _, _, f in group))
                refs = [refs] if len(group) == 1 else refs
                for (job, meta, _), depth_ref in zip(group, refs):
                    encoding_refs[_encode_task.remote(depth_ref, meta["timestamps"], encoding)] = job

        submit_decodes()
        while not exhausted or decoding or ready or encoding_refs:
            submit_decodes()
            waiting = list(decoding) + list(encoding_refs)
            if not waiting:
                dispatch(force=True)
                continue
            done, _ = ray.wait(waiting, num_returns=1)
            for ref in done:
                if ref in decoding:
                    job, frames_ref = decoding.pop(ref)
                    try:
                        meta = ray.get(ref)
                    except Exception as exc:  # a clip that will not decode is recorded, not raised
                        finish(job, None, exc)
                        continue
                    if meta["frames"] == 0:
                        finish(job, None, ValueError("no frames to run depth on"))
                        continue
                    ready.append((job, meta, frames_ref))
                else:
                    job = encoding_refs.pop(ref)
                    try:
                        finish(job, ray.get(ref), None)
                    except Exception as exc:  # inference or encoding failed for this video only
                        finish(job, None, exc)
            dispatch(force=exhausted and not decoding)
            while outbox:
                yield outbox.popleft()
