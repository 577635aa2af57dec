"""The shape of every per-video column stage: a small typed class that reads ok videos of the table
and writes one group of columns for each, whoever executes it (`stages.in_process`, or the Ray
layer's `distributed.stage_executor`).

A video goes `prepare` (CPU: decode what the stage needs) -> `infer` (the model, in batches across
videos, on a worker that ran `setup` once) -> `finish` (CPU: encode the outcome as the stage's row).
A stage with no model settles every video in `prepare`. An exception anywhere becomes that video's
`failed` row (`failed_row`): failures are data, and the rest of the shard goes on.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from kinetics_assets import hub
from kinetics_assets.table import open_table

if TYPE_CHECKING:
    from collections.abc import Hashable, Sequence

    import lance
    import pyarrow as pa
    from lance.blob import BlobFile

    from kinetics_assets.stages.rows import StageRow
    from kinetics_assets.steps.checks import Verdicts

__all__ = ["ColumnStage", "ModelInfo", "ModelStage", "Prepared", "Resources", "TableSnapshot", "VideoTask"]

RowT = TypeVar("RowT", bound="StageRow")
MetaT = TypeVar("MetaT")
PayloadT = TypeVar("PayloadT")
OutputT = TypeVar("OutputT")

SettingValue = str | int | float | bool | None


@dataclass(frozen=True, kw_only=True)
class Resources:
    """What one unit of the stage's work holds while it runs."""

    cpus: int = 1
    """CPUs each prepare and finish task reserves; its codecs run exactly that many threads."""
    gpus: float | None = None
    """GPUs each model worker holds: None, one when the cluster has GPUs, else none."""
    memory_mb: int = 0
    """Memory each CPU task reserves on the scheduler (0: none declared)."""

    def __post_init__(self) -> None:
        if self.cpus < 1:
            raise ValueError(f"Resources.cpus must be >= 1, got {self.cpus}")


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """The model a run loaded, as its rows and metadata record it."""

    model_id: str
    revision: str
    device: str
    dtype: str


@dataclass(frozen=True, kw_only=True)
class TableSnapshot:
    """The table at the version a run read: every worker reads the same videos, whatever commits."""

    uri: str
    version: int
    storage_options: dict[str, str] | None = None

    def open(self) -> lance.LanceDataset:
        return _open(self.uri, self.version, json.dumps(self.storage_options, sort_keys=True))

    def video(self, row_id: int) -> BlobFile:
        """The stored video of one row, as a file-like object."""
        blob = self.open().take_blobs("video", ids=[row_id])[0]
        if blob is None:  # a null blob: there is no video to work on
            raise ValueError("the row has no video bytes")
        return blob


@functools.lru_cache(maxsize=4)
def _open(uri: str, version: int, storage_options: str) -> lance.LanceDataset:
    """One open dataset per version and process: a worker runs many videos of the same snapshot."""
    return open_table(uri, json.loads(storage_options), version=version)


@dataclass(frozen=True, kw_only=True)
class VideoTask:
    """One ok video of the table, found by its row id in the run's snapshot."""

    video_id: str
    row_id: int
    shard: str
    duration_s: float | None
    snapshot: TableSnapshot


@dataclass(frozen=True, kw_only=True)
class Prepared(Generic[MetaT, PayloadT]):
    """A video ready for the model: `meta` is small (it travels to the driver and to `finish`),
    `payload` is large (it goes to the model only). One model call takes videos of one `batch_key`,
    up to the stage's `batch_size` of `weight` (frames, clips, ...).
    """

    task: VideoTask
    meta: MetaT
    payload: PayloadT
    batch_key: Hashable = None
    weight: int = 1

    def without_payload(self) -> Prepared[MetaT, None]:
        return Prepared(task=self.task, meta=self.meta, payload=None, batch_key=self.batch_key, weight=self.weight)


class ColumnStage(ABC, Generic[RowT, MetaT, PayloadT, OutputT]):
    """A per-video stage that writes the column group of `row_type` (see the module docstring).

    Subclasses are frozen dataclasses: an instance is the stage's settings for one run, pickled to
    every worker. `setup` runs once per worker before `infer`; nothing else may rely on it.
    """

    name: ClassVar[str]
    """The stage in logs and messages ("depth")."""
    asset: ClassVar[str]
    """The asset that materializes it, named in the hint when its upstream is missing."""
    row_type: ClassVar[type[StageRow]]
    statuses: ClassVar[tuple[str, ...]]
    """Every status a row may have; `failed` is the one a re-run tries again."""
    uses_model: ClassVar[bool] = True
    heavy_finish: ClassVar[bool] = False
    """`finish` is CPU work worth a task of its own (else it runs where the outputs arrive)."""
    default_in_flight: ClassVar[int] = 8
    """Videos between prepare and finish at once, unless the executor is told otherwise."""

    resources: Resources
    pretrained: bool = True
    """Whether the model's weights are the real ones (recorded beside a model stage's rows)."""

    @property
    def batch_size(self) -> int:
        """Weight (frames, clips) one model call takes; a heavier single video is batched inside."""
        return 1

    @property
    def final_statuses(self) -> tuple[str, ...]:
        return tuple(s for s in self.statuses if s != "failed")

    @abstractmethod
    def settings(self) -> dict[str, SettingValue]:
        """Everything that decides the columns' content: a row made with other settings is redone."""

    def frames_of(self, row: RowT) -> int:  # noqa: ARG002 - a stage that counts frames says so
        """Frames a finished row stands for, for the progress line."""
        return 0

    def settings_key(self) -> str:
        return json.dumps(self.settings(), sort_keys=True)

    def columns(self) -> pa.Schema:
        """The column group as stored: `row_type.schema`, unless a setting decides a column's type
        (an embedding's width), which the stage then states here.
        """
        return self.row_type.schema

    def check_table_columns(self, table: pa.Schema) -> None:
        """Raise ValueError when the table already holds one of the group's columns with another
        type: this run's rows could not be written there (a column's type is fixed by its first write).
        """
        for wanted in self.columns():
            if wanted.name in table.names and (found := table.field(wanted.name).type) != wanted.type:
                raise ValueError(
                    f"the table's column {wanted.name} holds {found}; {self.name} with these settings writes {wanted.type}"
                )

    def setup(self) -> None:
        """Load the model, once per worker."""

    def model_info(self) -> ModelInfo | None:
        """The loaded model (after `setup`); None for a stage with no model."""
        return None

    @abstractmethod
    def prepare(self, task: VideoTask) -> Prepared[MetaT, PayloadT] | RowT:
        """The CPU work before the model; a row when the video is settled without it."""

    def infer(self, payloads: Sequence[PayloadT]) -> Sequence[OutputT]:
        """The model over the payloads of one batch, one output each."""
        raise NotImplementedError(f"{self.name} settles every video in prepare")

    def finish(self, prepared: Prepared[MetaT, None], output: OutputT) -> RowT:
        """The row of a video from the model's output."""
        raise NotImplementedError(f"{self.name} settles every video in prepare")

    @abstractmethod
    def failed_row(self, task: VideoTask, error: str) -> RowT:
        """The row of a video that failed; `error` names the video and the cause."""

    @abstractmethod
    def check(self, ds: lance.LanceDataset, shard: str) -> Verdicts:
        """Read the committed columns of a shard back and judge them."""

    def run_safely(self, task: VideoTask) -> Prepared[MetaT, PayloadT] | RowT:
        """`prepare`, with an exception turned into the video's failed row."""
        try:
            return self.prepare(task)
        except Exception as exc:  # noqa: BLE001 - recorded in the video's row, as every executor does
            return self.failed_row(task, describe_error(task.video_id, exc))

    def finish_safely(self, prepared: Prepared[MetaT, None], output: OutputT) -> RowT:
        """`finish`, with an exception turned into the video's failed row."""
        try:
            return self.finish(prepared, output)
        except Exception as exc:  # noqa: BLE001 - recorded in the video's row, as every executor does
            return self.failed_row(prepared.task, describe_error(prepared.task.video_id, exc))


class ModelStage(ColumnStage[RowT, MetaT, PayloadT, OutputT]):
    """A stage whose model (a Hugging Face model, by its engine config `model`) is loaded once per
    worker: `setup` loads it, `loaded` is it, and its id and revision join the stage's settings.
    """

    model: Any
    """The engine's model config: `model_id`, `batch_size` and `weights()`."""

    @abstractmethod
    def load_model(self) -> Any:  # noqa: ANN401 - the engine's loaded model
        """Load the model (imports torch: called on the model worker only)."""

    @functools.cached_property
    def loaded(self) -> Any:  # noqa: ANN401 - the engine's loaded model
        return self.load_model()

    @property
    def batch_size(self) -> int:
        return int(self.model.batch_size)

    def setup(self) -> None:
        _ = self.loaded

    def model_info(self) -> ModelInfo:
        loaded = self.loaded
        return ModelInfo(
            model_id=loaded.model_id, revision=loaded.revision, device=str(loaded.device), dtype=str(loaded.dtype)
        )

    def model_settings(self) -> dict[str, SettingValue]:
        """The settings every model stage shares: which weights, and whether they are the real ones."""
        revision = hub.loaded_revision(self.model.weights())
        return as_settings(model_id=self.model.model_id, revision=revision, pretrained=self.pretrained)


def describe_error(video_id: str, error: BaseException | str) -> str:
    """The error column's text: the video, the exception's type and message (bounded)."""
    cause = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return f"{video_id}: {cause}"[:2000]


def as_settings(**values: Any) -> dict[str, SettingValue]:
    """Settings values as stored: anything not a plain scalar as its string."""
    return {k: v if v is None or isinstance(v, str | int | float | bool) else str(v) for k, v in values.items()}
