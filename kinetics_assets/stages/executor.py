"""What the shard loop asks of whoever runs a stage's videos, and the executor that runs them in the
calling process (tests, small runs); `distributed.stage_executor` is the same on Ray.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from kinetics_assets.stages.batching import Batcher
from kinetics_assets.stages.contract import Prepared, describe_error

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from kinetics_assets.stages.contract import ColumnStage, ModelInfo, VideoTask
    from kinetics_assets.stages.rows import StageRow


class StageRun(Protocol):
    """One row per task, yielded as each video finishes. The model loads when iteration begins; a
    model that cannot be loaded raises from the iteration (it would fail every video). Once the
    first row is out: `model` and `model_load_s` (starting the workers and loading the model).
    """

    model: ModelInfo | None
    model_load_s: float

    def __iter__(self) -> Iterator[Any]: ...


class StageExecutor(Protocol):
    def run(self, stage: ColumnStage[Any, Any, Any, Any], tasks: Sequence[VideoTask]) -> StageRun: ...


class InProcessExecutor:
    """Every video in this process, the model set up once per run, batched as on Ray."""

    def run(self, stage: ColumnStage[Any, Any, Any, Any], tasks: Sequence[VideoTask]) -> InProcessRun:
        return InProcessRun(stage, tasks)


class InProcessRun:
    def __init__(self, stage: ColumnStage[Any, Any, Any, Any], tasks: Sequence[VideoTask]) -> None:
        self._stage, self._tasks = stage, tasks
        self.model: ModelInfo | None = None
        self.model_load_s = 0.0

    def __iter__(self) -> Iterator[StageRow]:
        stage, started = self._stage, time.monotonic()
        if stage.uses_model:
            stage.setup()
            self.model = stage.model_info()
        self.model_load_s = time.monotonic() - started
        batcher = Batcher(stage.batch_size)
        for task in self._tasks:
            outcome = stage.run_safely(task)
            if not isinstance(outcome, Prepared):
                yield outcome
                continue
            batcher.add(outcome)
            for batch in batcher.take(force=False):
                yield from self._infer(batch)
        for batch in batcher.take(force=True):
            yield from self._infer(batch)

    def _infer(self, batch: list[Prepared[Any, Any]]) -> Iterator[StageRow]:
        stage = self._stage
        try:
            outputs = stage.infer([p.payload for p in batch])
        except Exception as exc:  # noqa: BLE001 - the batch's videos fail with the cause; the run goes on
            for prepared in batch:
                yield stage.failed_row(prepared.task, describe_error(prepared.task.video_id, exc))
            return
        for prepared, output in zip(batch, outputs, strict=True):
            yield stage.finish_safely(prepared.without_payload(), output)
