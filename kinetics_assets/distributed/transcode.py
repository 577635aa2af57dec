"""Transcode clips of many shards on Ray through one bounded window of 1-CPU tasks.

The window is shared by every shard of a run: the driver keeps submitting the next shard's clips
while the previous shard's last clips finish, so cores never idle at a shard boundary. Finished
rows stay in Ray's object store until a writer task turns a group of them into one Lance fragment of
their shard (fragments never mix shards). A shard is handed back, with its fragments written but not
committed, as soon as its last clip and its last writer are done. The driver keeps only small
per-clip summaries and fragment metadata, so its memory does not grow with the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import ray

from kinetics_assets.steps.clip_window import OnClip, ShardTranscodeOutcome
from kinetics_assets.steps.transcode_clip import ClipJob, ClipSummary, failed_row, process_clip, summary
from kinetics_assets.table import write_shard_fragments

if TYPE_CHECKING:
    from lance.fragment import FragmentMetadata

    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.table.video_row import VideoRow


# max_calls recycles a worker after that many clips: codec and allocator caches otherwise let a
# long-lived worker's memory creep up over thousands of clips (measured in BENCHMARKS.md).
@ray.remote(num_cpus=1, num_returns=2, max_retries=3, retry_exceptions=False, max_calls=200)
def _transcode_task(job: ClipJob, data: bytes, config: TranscodeConfig) -> tuple[ClipSummary, VideoRow]:
    row = process_clip(job, data, config)
    return summary(row), row


@ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)
def _write_fragment_task(uri: str, storage_options: dict | None, *rows: dict) -> list[FragmentMetadata]:
    return write_shard_fragments(rows, uri, storage_options)


@dataclass(frozen=True, kw_only=True)
class RayTranscodeOptions:
    max_in_flight: int = 4
    """Clips submitted but not finished, across all shards; bounds driver and object-store memory."""
    rows_per_fragment: int = 64
    bytes_per_fragment: int = 256 * 1024 * 1024
    source_bytes_per_fragment: int = 128 * 1024 * 1024
    """A clip's source bytes stay pinned in the object store until its row is written, so the
    group is also flushed by the source bytes it holds (else large sources spill to disk)."""
    watchdog_grace_s: float = 120.0
    """Extra time past the per-clip timeout before a stuck task is cancelled from outside."""


@dataclass(frozen=True, kw_only=True)
class RayTranscodeExecutor:
    """The transcode step's executor on Ray: one `RayTranscodeWindow` per step run."""

    options: RayTranscodeOptions = RayTranscodeOptions()

    def open_window(
        self, *, uri: str, storage_options: dict | None, config: TranscodeConfig, on_clip: OnClip
    ) -> RayTranscodeWindow:
        return RayTranscodeWindow(
            uri=uri, storage_options=storage_options, config=config, options=self.options, on_clip=on_clip
        )


@dataclass
class _Shard:
    outcome: ShardTranscodeOutcome
    started: float
    running: int = 0
    closed: bool = False
    pending_rows: list[ray.ObjectRef] = field(default_factory=list)
    pending_bytes: int = 0
    pending_source: int = 0
    writers: list[ray.ObjectRef] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class _Task:
    shard: str
    job: ClipJob
    row_ref: ray.ObjectRef
    submitted: float
    size: int


class RayTranscodeWindow:
    """Clip tasks of many shards in one bounded window (`steps.clip_window.ClipWindow` on Ray): a
    stuck task is cancelled by a watchdog, a dead worker's clip becomes a `worker_error` row.
    """

    def __init__(
        self,
        *,
        uri: str,
        storage_options: dict | None,
        config: TranscodeConfig,
        options: RayTranscodeOptions = RayTranscodeOptions(),
        on_clip: OnClip | None = None,
    ) -> None:
        self._uri = uri
        self._storage_options = storage_options
        self._config = config
        self._options = options
        self._on_clip = on_clip
        self._deadline_s = config.timeout_s + options.watchdog_grace_s
        self._running: dict[ray.ObjectRef, _Task] = {}
        self._shards: dict[str, _Shard] = {}

    def open_shard(self, shard: str) -> None:
        if shard in self._shards:
            raise ValueError(f"shard {shard} is already open in this window")
        self._shards[shard] = _Shard(ShardTranscodeOutcome(shard=shard), time.monotonic())

    def submit(self, shard: str, job: ClipJob, data: bytes) -> list[ShardTranscodeOutcome]:
        self._drain(until=self._options.max_in_flight - 1)
        # Ray's stubs type a `num_returns=2` call as one ref to the tuple; it returns two refs.
        summary_ref, row_ref = cast("list[ray.ObjectRef]", _transcode_task.remote(job, data, self._config))
        self._running[summary_ref] = _Task(
            shard=shard, job=job, row_ref=row_ref, submitted=time.monotonic(), size=len(data)
        )
        self._shards[shard].running += 1
        return self._completed(wait=False)

    def add_rows(self, shard: str, rows: list[VideoRow]) -> None:
        for row in rows:
            self._record(shard, summary(row), ray.put(row))

    def close_shard(self, shard: str) -> list[ShardTranscodeOutcome]:
        self._shards[shard].closed = True
        return self._completed(wait=False)

    def abandon(self, shard: str) -> None:
        """Its tasks are cancelled, nothing is committed."""
        for ref, task in list(self._running.items()):
            if task.shard == shard:
                ray.cancel(ref, force=False)
                del self._running[ref]
        self._shards.pop(shard, None)

    def finish(self) -> list[ShardTranscodeOutcome]:
        for state in self._shards.values():
            state.closed = True
        self._drain(until=0)
        return self._completed(wait=True)

    # ----------------------------------------------------------------------------------------------

    def _record(self, shard: str, clip: ClipSummary, row_ref: ray.ObjectRef) -> None:
        state = self._shards[shard]
        state.outcome.summaries.append(clip)
        state.pending_rows.append(row_ref)
        state.pending_bytes += clip.bytes or 0
        state.pending_source += clip.source_bytes or 0
        if self._on_clip is not None:
            self._on_clip(shard, clip)
        if self._group_is_full(state):
            self._flush(state)

    def _group_is_full(self, state: _Shard) -> bool:
        options = self._options
        return (
            len(state.pending_rows) >= options.rows_per_fragment
            or state.pending_bytes >= options.bytes_per_fragment
            or state.pending_source >= options.source_bytes_per_fragment
        )

    def _flush(self, state: _Shard) -> None:
        if state.pending_rows:
            state.writers.append(_write_fragment_task.remote(self._uri, self._storage_options, *state.pending_rows))
            state.pending_rows, state.pending_bytes, state.pending_source = [], 0, 0

    def _failed(self, task: _Task, error_type: str, message: str) -> None:
        row = failed_row(task.job, self._config, error_type, message[:2000], source_bytes=task.size)
        self._record(task.shard, summary(row), ray.put(row))

    def _drain(self, until: int) -> None:
        """Wait until at most `until` clips are in flight, recording each as it finishes."""
        while len(self._running) > until:
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=5.0)
            for ref in ready:
                self._collect(ref)
            self._cancel_overdue(time.monotonic())

    def _collect(self, ref: ray.ObjectRef) -> None:
        task = self._running.pop(ref)
        self._shards[task.shard].running -= 1
        try:
            self._record(task.shard, ray.get(ref), task.row_ref)
        except (ray.exceptions.RayError, OSError) as exc:
            # A worker that died (after Ray's own retries) or a lost object: the clip failed for a
            # system reason; record it and carry on.
            self._failed(task, "worker_error", f"{type(exc).__name__}: {exc}")

    def _cancel_overdue(self, now: float) -> None:
        """The watchdog: a task past the clip timeout (plus grace) is cancelled and its clip failed."""
        for ref, task in list(self._running.items()):
            if now - task.submitted > self._deadline_s:
                ray.cancel(ref, force=True)
                del self._running[ref]
                self._shards[task.shard].running -= 1
                self._failed(
                    task,
                    "timeout",
                    f"{task.shard}/{task.job.member}: no result after {self._deadline_s:.0f} s; task cancelled",
                )

    def _completed(self, *, wait: bool) -> list[ShardTranscodeOutcome]:
        """Shards whose source is exhausted, whose clips are all done and whose fragments are written."""
        done = []
        for name, state in list(self._shards.items()):
            if not state.closed or state.running:
                continue
            self._flush(state)
            if not wait and not _all_ready(state.writers):
                continue
            done.append(self._hand_back(state))
            del self._shards[name]
        return done

    def _hand_back(self, state: _Shard) -> ShardTranscodeOutcome:
        for fragments in ray.get(state.writers):
            state.outcome.fragments.extend(fragments)
        state.outcome.seconds = time.monotonic() - state.started
        return state.outcome


def _all_ready(refs: list[ray.ObjectRef]) -> bool:
    if not refs:
        return True
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    return len(ready) == len(refs)
