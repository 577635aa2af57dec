"""Any column stage on Ray: CPU tasks prepare and finish videos, a pool of model actors (each set
up once) runs the stage's batches, filled across the videos of every shard of the run.

A bounded number of videos is in flight, so preparing, inference and finishing of different videos
overlap while memory stays bounded; a prepared video's payload stays in the object store, from its
task to the actor that takes it. A task or an actor call that dies fails its videos with the cause.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import ray

from kinetics_assets.distributed.options import RayStageOptions
from kinetics_assets.stages.batching import Batcher
from kinetics_assets.stages.contract import Prepared, describe_error

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from kinetics_assets.stages.contract import ColumnStage, ModelInfo, VideoTask


class _StageWorker:
    """One model of the stage, set up once; `infer` takes the payloads of one batch."""

    def __init__(self, stage: ColumnStage[Any, Any, Any, Any], torch_threads: int | None) -> None:
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        stage.setup()
        self.stage = stage

    def info(self) -> ModelInfo | None:
        return self.stage.model_info()

    def infer(self, *payloads: Any) -> Any:  # noqa: ANN401 - one output per payload, as its own return
        outputs = list(self.stage.infer(payloads))
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


# `ray.remote` as a function rather than a class decorator, so type checkers see an `ActorClass`.
StageWorker = ray.remote(_StageWorker)


# Workers are recycled after 200 tasks: a backstop against leaks in native code (BENCHMARKS.md,
# memory). The resources are set per call from the stage's declaration.
@ray.remote(num_returns=2, max_retries=3, max_calls=200)
def _prepare_task(stage: ColumnStage[Any, Any, Any, Any], task: VideoTask) -> tuple[Any, Any]:
    outcome = stage.run_safely(task)
    if isinstance(outcome, Prepared):
        return outcome.without_payload(), outcome.payload
    return outcome, None


@ray.remote(max_retries=3, max_calls=200)
def _finish_task(stage: ColumnStage[Any, Any, Any, Any], prepared: Prepared[Any, None], output: Any) -> Any:  # noqa: ANN401 - the stage's own output type
    return stage.finish_safely(prepared, output)


@dataclass(frozen=True, kw_only=True)
class RayStageExecutor:
    options: RayStageOptions = RayStageOptions()

    def run(self, stage: ColumnStage[Any, Any, Any, Any], tasks: Sequence[VideoTask]) -> RayStageRun:
        return RayStageRun(stage, tasks, options=self.options)


class RayStageRun:
    """Rows of many shards' videos in one run (`stages.executor.StageRun` on Ray). The actors start
    when iteration begins and are killed when it ends; the first videos prepare meanwhile.
    """

    def __init__(
        self, stage: ColumnStage[Any, Any, Any, Any], tasks: Sequence[VideoTask], *, options: RayStageOptions
    ) -> None:
        self._stage, self._options = stage, options
        self._pending = deque(tasks)
        self._max_in_flight = options.max_in_flight or stage.default_in_flight
        self.model: ModelInfo | None = None
        self.model_load_s = 0.0
        self._stage_ref: ray.ObjectRef = ray.put(stage)  # pickled once, not once per task
        self._actors: list[Any] = []
        self._next_actor = 0
        self._preparing: dict[ray.ObjectRef, tuple[VideoTask, ray.ObjectRef]] = {}  # outcome ref -> payload ref
        self._waiting = Batcher(stage.batch_size)  # prepared videos (payloads as refs) for the model
        self._inferring: dict[ray.ObjectRef, Prepared[Any, Any]] = {}  # output ref, for a light finish
        self._finishing: dict[ray.ObjectRef, VideoTask] = {}
        self._outbox: deque[Any] = deque()

    def __iter__(self) -> Iterator[Any]:
        started, stage, options = time.monotonic(), self._stage, self._options
        if stage.uses_model:
            gpus = options.actor_num_gpus if options.actor_num_gpus is not None else stage.resources.gpus
            if gpus is None:
                gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
            self._actors = [
                StageWorker.options(num_cpus=options.actor_num_cpus, num_gpus=gpus).remote(stage, options.torch_threads)
                for _ in range(options.actors)
            ]
        try:
            self._submit()  # the first videos prepare while the actors start and load the model
            if self._actors:
                # Loading the model is where missing weights surface: fail the run once, not every video.
                self.model = ray.get(self._actors[0].info.remote())
            self.model_load_s = time.monotonic() - started
            yield from self._drain()
        finally:
            for actor in self._actors:
                ray.kill(actor)

    def _in_flight(self) -> int:
        return len(self._preparing) + len(self._waiting) + len(self._inferring) + len(self._finishing)

    def _submit(self) -> None:
        resources = self._stage.resources
        reserved: dict[str, Any] = {"num_cpus": resources.cpus}
        if resources.memory_mb:
            reserved["memory"] = resources.memory_mb * 2**20
        while self._pending and self._in_flight() < self._max_in_flight:
            task = self._pending.popleft()
            # Ray's stubs type a `num_returns=2` call as one ref to the tuple; it returns two refs.
            outcome_ref, payload_ref = cast(
                "list[ray.ObjectRef]", _prepare_task.options(**reserved).remote(self._stage_ref, task)
            )
            self._preparing[outcome_ref] = (task, payload_ref)

    def _drain(self) -> Iterator[Any]:
        while self._pending or self._in_flight():
            self._submit()
            self._dispatch(force=not self._pending and not self._preparing)
            waiting = [*self._preparing, *self._inferring, *self._finishing]
            if not waiting:  # the window is full of videos waiting for a batch that cannot fill
                self._dispatch(force=True)
                continue
            done, _ = ray.wait(waiting, num_returns=1)
            for ref in done:
                self._collect(ref)
            while self._outbox:
                yield self._outbox.popleft()

    def _collect(self, ref: ray.ObjectRef) -> None:
        stage = self._stage
        if ref in self._preparing:
            task, payload_ref = self._preparing.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the task itself died: this video fails, the run goes on
                self._outbox.append(stage.failed_row(task, describe_error(task.video_id, exc)))
                return
            if isinstance(outcome, Prepared):
                self._waiting.add(dataclasses.replace(outcome, payload=payload_ref))
            else:
                self._outbox.append(outcome)
        elif ref in self._inferring:
            prepared = self._inferring.pop(ref)
            try:
                output = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the actor call failed: its videos fail with the cause
                self._outbox.append(stage.failed_row(prepared.task, describe_error(prepared.task.video_id, exc)))
                return
            self._outbox.append(stage.finish_safely(prepared, output))
        else:
            task = self._finishing.pop(ref)
            try:
                self._outbox.append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - inference or finishing failed for this video only
                self._outbox.append(stage.failed_row(task, describe_error(task.video_id, exc)))

    def _dispatch(self, *, force: bool) -> None:
        """Send waiting videos to the model in batches; a batch short of full waits unless `force`."""
        for batch in self._waiting.take(force=force):
            actor = self._actors[self._next_actor % len(self._actors)]
            self._next_actor += 1
            refs = actor.infer.options(num_returns=len(batch)).remote(*(p.payload for p in batch))
            refs = [refs] if len(batch) == 1 else refs
            for prepared, output_ref in zip(batch, refs, strict=True):
                light = prepared.without_payload()
                if self._stage.heavy_finish:
                    cpus = self._stage.resources.cpus
                    finish_ref = _finish_task.options(num_cpus=cpus).remote(self._stage_ref, light, output_ref)
                    self._finishing[finish_ref] = prepared.task
                else:
                    self._inferring[output_ref] = light
