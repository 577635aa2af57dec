"""Transcode clips of many shards on Ray through one bounded window of 1-CPU tasks.

The window is shared by every shard of a run: the driver keeps submitting the next shard's clips
while the previous shard's last clips finish, so cores never idle at a shard boundary. Finished
rows stay in Ray's object store until a writer task turns a group of them into one Lance fragment of
their shard (fragments never mix shards). A shard is handed back, with its fragments written but not
committed, as soon as its last clip and its last writer are done. The driver keeps only small
per-clip summaries and fragment metadata, so its memory does not grow with the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray

from kinetics_assets.steps.transcode_clip import ClipJob, failed_row, process_clip, summary
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.table.video_table import write_shard_fragments

log = logging.getLogger(__name__)


# max_calls recycles a worker after that many clips: codec and allocator caches otherwise let a
# long-lived worker's memory creep up over thousands of clips (measured in BENCHMARKS.md).
@ray.remote(num_cpus=1, num_returns=2, max_retries=3, retry_exceptions=False, max_calls=200)
def _transcode_task(job: ClipJob, data: bytes, config: TranscodeConfig):
    row = process_clip(job, data, config)
    return summary(row), row


@ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)
def _write_fragment_task(uri: str, storage_options: dict | None, *rows: dict):
    return write_shard_fragments(rows, uri, storage_options)


@dataclass(frozen=True)
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


@dataclass
class ShardTranscodeOutcome:
    """One shard's clips, transcoded and written as fragments (not yet committed)."""

    shard: str
    fragments: list = field(default_factory=list)
    summaries: list[dict] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Shard:
    outcome: ShardTranscodeOutcome
    started: float
    running: int = 0
    closed: bool = False
    pending_rows: list = field(default_factory=list)
    pending_bytes: int = 0
    pending_source: int = 0
    writers: list = field(default_factory=list)


@dataclass(frozen=True)
class _Task:
    shard: str
    job: ClipJob
    row_ref: ray.ObjectRef
    submitted: float
    size: int


class TranscodeWindow:
    """Clip tasks of many shards in one bounded window; shards come back whole, one by one.

    Use: `open_shard`, `submit` each clip, `close_shard` when the shard's source is exhausted (or
    `abandon` it when reading it failed), then `finish`. `submit`, `close_shard` and `finish` return
    the shards that completed meanwhile.
    """

    def __init__(
        self,
        *,
        uri: str,
        storage_options: dict | None,
        config: TranscodeConfig,
        options: RayTranscodeOptions = RayTranscodeOptions(),
        on_clip: Callable[[str, dict], None] | None = None,
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
        self._shards[shard] = _Shard(ShardTranscodeOutcome(shard), time.monotonic())

    def submit(self, shard: str, job: ClipJob, data: bytes) -> list[ShardTranscodeOutcome]:
        self._drain(until=self._options.max_in_flight - 1)
        summary_ref, row_ref = _transcode_task.remote(job, data, self._config)
        self._running[summary_ref] = _Task(shard, job, row_ref, time.monotonic(), len(data))
        self._shards[shard].running += 1
        return self._completed(wait=False)

    def add_rows(self, shard: str, rows: list[dict]) -> None:
        """Rows made by the driver (clips that were never transcoded: failed downloads, limits)."""
        for row in rows:
            self._record(shard, summary(row), ray.put(row))

    def close_shard(self, shard: str) -> list[ShardTranscodeOutcome]:
        self._shards[shard].closed = True
        return self._completed(wait=False)

    def abandon(self, shard: str) -> None:
        """Drop a shard whose source failed midway: its tasks are cancelled, nothing is committed."""
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

    def _record(self, shard: str, summary_row: dict, row_ref: ray.ObjectRef) -> None:
        state = self._shards[shard]
        state.outcome.summaries.append(summary_row)
        state.pending_rows.append(row_ref)
        state.pending_bytes += summary_row.get("bytes") or 0
        state.pending_source += summary_row.get("source_bytes") or 0
        if self._on_clip is not None:
            self._on_clip(shard, summary_row)
        if (
            len(state.pending_rows) >= self._options.rows_per_fragment
            or state.pending_bytes >= self._options.bytes_per_fragment
            or state.pending_source >= self._options.source_bytes_per_fragment
        ):
            self._flush(state)

    def _flush(self, state: _Shard) -> None:
        if state.pending_rows:
            state.writers.append(_write_fragment_task.remote(self._uri, self._storage_options, *state.pending_rows))
            state.pending_rows, state.pending_bytes, state.pending_source = [], 0, 0

    def _failed(self, task: _Task, error_type: str, message: str) -> None:
        row = failed_row(task.job, self._config, error_type, message[:2000], task.size)
        self._record(task.shard, summary(row), ray.put(row))

    def _drain(self, until: int) -> None:
        while len(self._running) > until:
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=5.0)
            now = time.monotonic()
            for ref in ready:
                task = self._running.pop(ref)
                self._shards[task.shard].running -= 1
                try:
                    self._record(task.shard, ray.get(ref), task.row_ref)
                except (ray.exceptions.RayError, OSError) as exc:
                    # A worker that died (after Ray's own retries) or a lost object: the clip failed
                    # for a system reason; record it and carry on.
                    self._failed(task, "worker_error", f"{type(exc).__name__}: {exc}")
            for ref, task in list(self._running.items()):
                if now - task.submitted > self._deadline_s:
                    ray.cancel(ref, force=True)
                    del self._running[ref]
                    self._shards[task.shard].running -= 1
                    self._failed(task, "timeout", f"{task.shard}/{task.job.member}: no result after "
                                 f"{self._deadline_s:.0f} s; task cancelled")

    def _completed(self, wait: bool) -> list[ShardTranscodeOutcome]:
        """Shards whose source is exhausted, whose clips are all done and whose fragments are written."""
        done = []
        for name, state in list(self._shards.items()):
            if not state.closed or state.running:
                continue
            self._flush(state)
            if not wait and state.writers:
                ready, _ = ray.wait(state.writers, num_returns=len(state.writers), timeout=0)
                if len(ready) < len(state.writers):
                    continue
            for fragments in ray.get(state.writers):
                state.outcome.fragments.extend(fragments)
            state.outcome.seconds = time.monotonic() - state.started
            done.append(state.outcome)
            del self._shards[name]
        return done
