"""The one shard loop of every column stage: read the shards' ok videos at one version, skip those
done with the same settings, run the rest through one executor run (the model loaded once, batches
filled across shards), commit each shard in one column write as soon as its last video is done, and
judge what was committed.

A shard with no rows in the table is a ShardFailure (`raise_errors` raises UpstreamMissing); a
shard whose commit fails is a ShardFailure too, and the others go on. A re-run overwrites the same
columns of the same rows, so the loop is idempotent.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pyarrow as pa

from kinetics_assets.stages.contract import TableSnapshot, VideoTask
from kinetics_assets.stages.rows import Provenance, rows_to_arrow
from kinetics_assets.steps.failures import ShardFailure
from kinetics_assets.steps.progress import Progress
from kinetics_assets.steps.shard_state import read_shard_state
from kinetics_assets.table import add_missing_columns, open_table, write_columns

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import lance

    from kinetics_assets.stages.contract import ColumnStage, ModelInfo
    from kinetics_assets.stages.executor import StageExecutor, StageRun
    from kinetics_assets.steps.checks import Verdicts

__all__ = ["StageShardResult", "VideoFailure", "run_column_stage", "run_column_stage_shard"]

RowT = TypeVar("RowT")


@dataclass(frozen=True, kw_only=True)
class VideoFailure:
    """A video of the shard the stage could not do, and why."""

    video_id: str
    error: str


@dataclass(kw_only=True)
class StageShardResult(Generic[RowT]):
    """One shard of a column stage, committed (or found done) and checked."""

    stage: str
    statuses: tuple[str, ...]
    """Every status the stage's rows may have (`counts` names each, zero or not)."""
    shard: str
    rows: list[RowT]
    """The rows this run wrote (none when `unchanged`)."""
    version: int
    seconds: float
    """From the start of the run to this shard's commit."""
    model_load_s: float = 0.0
    """Part of `seconds`: starting the workers and loading the model, once per run."""
    model: ModelInfo | None = None
    unchanged: bool = False
    """Every ok video already had these columns from the same settings; nothing was written."""
    checks: Verdicts = field(default_factory=dict)

    @property
    def videos(self) -> int:
        return len(self.rows)

    @property
    def counts(self) -> dict[str, int]:
        """Videos per status."""
        return dict.fromkeys(self.statuses, 0) | Counter(r.status for r in self.rows)  # type: ignore[attr-defined]

    @property
    def ok(self) -> int:
        return self.counts.get("ok", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def failures(self) -> list[VideoFailure]:
        return [VideoFailure(video_id=r.video_id, error=r.error) for r in self.rows if r.status == "failed"]  # type: ignore[attr-defined]


def run_column_stage_shard(shard: str, stage: ColumnStage[Any, Any, Any, Any], **kwargs: Any) -> StageShardResult[Any]:
    """One shard, always done (never skipped), raising what fails. Keywords: those of `run_column_stage`."""
    kwargs.setdefault("skip_committed", False)
    (result,) = run_column_stage(stage, [shard], raise_errors=True, **kwargs)
    if isinstance(result, ShardFailure):  # not reached: with `raise_errors` a failed shard raises
        raise TypeError(result.error)
    return result


def run_column_stage(
    stage: ColumnStage[Any, Any, Any, Any],
    shards: Sequence[str],
    *,
    lance_uri: str,
    storage_options: dict[str, str] | None,
    executor: StageExecutor,
    skip_committed: bool = True,
    log: Callable[[str], None] = print,
    raise_errors: bool = False,
) -> Iterator[StageShardResult[Any] | ShardFailure]:
    """`stage` over the ok videos of `shards`, one commit per shard; results in completion order."""
    started = time.monotonic()
    prefix = stage.row_type.prefix
    group = pa.schema([f for f in stage.columns() if f.name != "video_id"])
    state = read_shard_state(
        shards,
        lance_uri=lance_uri,
        storage_options=storage_options,
        columns=["video_id", "shard", "duration_s", "processed_at", *_state_columns(prefix)],
        asset=stage.asset,
        add_columns=lambda uri, options: add_missing_columns(uri, options, group, f"the {stage.name} columns"),
        raise_errors=raise_errors,
    )
    yield from state.missing
    if state.ds is None:
        return
    ds = state.ds
    # A column of another type (an embedding of another width) would fail every shard's commit.
    stage.check_table_columns(ds.schema)
    # Read once: the rows of this run record the settings they were judged against.
    settings = stage.settings_key()
    commits = _ShardCommits(
        stage, ds, lance_uri, storage_options, settings=settings, started=started, raise_errors=raise_errors
    )
    todo: dict[str, list[dict[str, Any]]] = {}
    for shard, rows in state.rows.items():
        if skip_committed and rows and all(_done(stage, r, settings) for r in rows):
            log(f"shard {shard}: {stage.name} already made with these settings for all {len(rows)} ok videos; skipped")
            yield commits.unchanged(shard)
        elif not rows:
            yield commits.result(shard, [], run=None)
        else:
            todo[shard] = rows
    snapshot = TableSnapshot(uri=lance_uri, version=ds.version, storage_options=storage_options)
    tasks = [
        VideoTask(
            video_id=r["video_id"], row_id=r["_rowid"], shard=r["shard"], duration_s=r["duration_s"], snapshot=snapshot
        )
        for rows in todo.values()
        for r in rows
    ]
    if not tasks:
        return
    log(f"{stage.name} for {len(tasks)} ok videos of {len(todo)} shard(s) at table version {ds.version}")
    run = executor.run(stage, tasks)
    shard_of = {t.video_id: t.shard for t in tasks}
    expected = {shard: len(rows) for shard, rows in todo.items()}
    done: dict[str, list[Any]] = {shard: [] for shard in todo}
    progress = Progress(log, stage.name, "video", len(tasks))
    for row in run:
        shard = shard_of[row.video_id]
        done[shard].append(row)
        if row.status == "failed":
            log(f"shard {shard}: {stage.name} failed: {row.error}")
        progress.advance(frames=stage.frames_of(row))
        count = len(done[shard])
        if count % 10 == 0 or count == expected[shard]:
            # Per shard, for the run's log (and the crash tests, which kill a run at such a line).
            log(f"shard {shard}: {stage.name} done for {count}/{expected[shard]} videos")
        if count == expected[shard]:
            yield commits.result(shard, done.pop(shard), run=run)


def _state_columns(prefix: str) -> list[str]:
    return [f"{prefix}_status", f"{prefix}_settings", f"{prefix}_processed_at"]


def _done(stage: ColumnStage[Any, Any, Any, Any], row: dict[str, Any], settings: str) -> bool:
    """The video has a final status from these settings, made after the video itself was."""
    prefix = stage.row_type.prefix
    made, video_made = row[f"{prefix}_processed_at"], row["processed_at"]
    return (
        row[f"{prefix}_status"] in stage.final_statuses
        and row[f"{prefix}_settings"] == settings
        and made is not None
        and video_made is not None
        and made >= video_made
    )


class _ShardCommits:
    """Commits a shard's rows in one column write, then reads them back for the checks."""

    def __init__(
        self,
        stage: ColumnStage[Any, Any, Any, Any],
        ds: lance.LanceDataset,
        uri: str,
        storage_options: dict[str, str] | None,
        *,
        settings: str,
        started: float,
        raise_errors: bool,
    ) -> None:
        self._stage, self._ds, self._uri, self._storage_options = stage, ds, uri, storage_options
        self._settings, self._started, self._raise_errors = settings, started, raise_errors

    def unchanged(self, shard: str) -> StageShardResult[Any]:
        result = self._checked(shard, [], self._ds, run=None, started=time.monotonic())
        result.unchanged = True
        return result

    def result(self, shard: str, rows: list[Any], *, run: StageRun | None) -> StageShardResult[Any] | ShardFailure:
        try:
            committed = self._commit(rows, run) if rows else self._ds
            return self._checked(shard, rows, committed, run=run, started=self._started)
        except Exception as exc:  # this shard's commit failed; the others go on
            if self._raise_errors:
                raise
            return ShardFailure(shard, f"{type(exc).__name__}: shard {shard}: {exc}")

    def _commit(self, rows: list[Any], run: StageRun | None) -> lance.LanceDataset:
        stage = self._stage
        provenance = Provenance(
            settings=self._settings,
            processed_at=datetime.now(UTC),
            model=run.model if run else None,
            pretrained=stage.pretrained,
        )
        table = rows_to_arrow(rows, stage.row_type, provenance, schema=stage.columns())
        version = write_columns(self._uri, table, stage.name, storage_options=self._storage_options)
        return open_table(self._uri, self._storage_options, version=version)

    def _checked(
        self, shard: str, rows: list[Any], committed: lance.LanceDataset, *, run: StageRun | None, started: float
    ) -> StageShardResult[Any]:
        return StageShardResult(
            stage=self._stage.name,
            statuses=self._stage.statuses,
            shard=shard,
            rows=rows,
            version=committed.version,
            seconds=time.monotonic() - started,
            model_load_s=run.model_load_s if run else 0.0,
            model=run.model if run else None,
            checks=self._stage.check(committed, shard),
        )
