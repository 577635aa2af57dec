"""Where a shard asset runs its per-clip work: the steps are handed an executor, on Ray
(`RayResource`) or in the step's own process (`InProcessExecution`, no Ray: small runs, tests).

Both run the same per-clip functions. The engines and the models are imported when a step first
asks for an executor, so that loading the code location stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from kinetics_assets.distributed.options import RayStageOptions
    from kinetics_assets.stages.executor import StageExecutor
    from kinetics_assets.steps.clip_window import TranscodeExecutor
    from resources.hub_model import HubModelResource


class ClipExecution(dg.ConfigurableResource):
    """The executors a step is handed, and how a model step lays out its model."""

    def transcode_executor(self, *, max_in_flight: int | None) -> tuple[TranscodeExecutor, int]:
        """The transcode executor and how many clips it holds in flight."""
        raise NotImplementedError

    def stage_executor(self, options: RayStageOptions) -> StageExecutor:
        """The executor of a column stage (depth, transcripts, ...)."""
        raise NotImplementedError

    def model_layout(self, model: HubModelResource, *, steps_at_once: int) -> dict[str, Any]:
        """The model actors' layout (actors, actor_num_gpus, actor_num_cpus); empty with no actors."""
        raise NotImplementedError

    def describe(self) -> str:
        """Where the work runs, for the step's log."""
        raise NotImplementedError


class InProcessExecution(ClipExecution):
    """Each clip in the step's own process, one after another, the model loaded once per step."""

    rows_per_fragment: int = 64
    """Transcoded rows (with their video bytes) held before they are written as one fragment."""

    def transcode_executor(self, *, max_in_flight: int | None) -> tuple[TranscodeExecutor, int]:  # noqa: ARG002 - one clip at a time
        from kinetics_assets.steps.in_process_transcode import InProcessTranscodeExecutor

        return InProcessTranscodeExecutor(rows_per_fragment=self.rows_per_fragment), 1

    def stage_executor(self, options: RayStageOptions) -> StageExecutor:  # noqa: ARG002 - no actors
        from kinetics_assets.stages.executor import InProcessExecutor

        return InProcessExecutor()

    def model_layout(self, model: HubModelResource, *, steps_at_once: int) -> dict[str, Any]:  # noqa: ARG002 - no actors
        return {}

    def describe(self) -> str:
        return "in this process"
