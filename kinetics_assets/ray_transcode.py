"""Transcode a shard on Ray: one 1-CPU task per clip, a bounded number in flight.

The driver streams members out of the verified archive and never holds more than `max_in_flight`
clips; finished rows stay in Ray's object store until a writer task turns a group of them into one
Lance fragment. The driver only keeps small per-clip summaries and fragment metadata, so its memory
does not grow with the shard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import ray

from kinetics_assets.clip_processing import ClipJob, failed_row, process_clip, summary
from kinetics_assets.transcode import TranscodeConfig
from kinetics_assets.video_table import write_shard_fragments

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


@dataclass
class ShardTranscodeOutcome:
    fragments: list = field(default_factory=list)
    summaries: list[dict] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class RayTranscodeOptions:
    max_in_flight: int = 4
    """Clips submitted but not finished; bounds the memory of the driver and the object store."""
    rows_per_fragment: int = 64
    bytes_per_fragment: int = 256 * 1024 * 1024
    source_bytes_per_fragment: int = 128 * 1024 * 1024
    """A clip's source bytes stay pinned in the object store until its row is written, so the
    group is also flushed by the source bytes it holds (else large sources spill to disk)."""
    watchdog_grace_s: float = 120.0
    """Extra time past the per-clip timeout before a stuck task is cancelled from outside."""


def transcode_shard(
    clips: Iterable[tuple[ClipJob, bytes]],
    *,
    uri: str,
    storage_options: dict | None,
    config: TranscodeConfig,
    options: RayTranscodeOptions = RayTranscodeOptions(),
    on_clip: Callable[[dict], None] | None = None,
) -> ShardTranscodeOutcome:
    """Run every clip through a Ray task and write the rows as fragments (not yet committed)."""
    started = time.monotonic()
    outcome = ShardTranscodeOutcome()
    running: dict[ray.ObjectRef, tuple[ClipJob, ray.ObjectRef, float, int]] = {}
    pending_rows: list[ray.ObjectRef] = []
    pending_bytes = 0
    pending_source = 0
    writers: list[ray.ObjectRef] = []
    deadline_s = config.timeout_s + options.watchdog_grace_s

    def flush() -> None:
        nonlocal pending_rows, pending_bytes, pending_source
        if pending_rows:
            writers.append(_write_fragment_task.remote(uri, storage_options, *pending_rows))
            pending_rows, pending_bytes, pending_source = [], 0, 0

    def record(summary_row: dict, row_ref) -> None:
        nonlocal pending_bytes, pending_source
        outcome.summaries.append(summary_row)
        pending_rows.append(row_ref)
        pending_bytes += summary_row.get("bytes") or 0
        pending_source += summary_row.get("source_bytes") or 0
        if on_clip is not None:
            on_clip(summary_row)
        if (
            len(pending_rows) >= options.rows_per_fragment
            or pending_bytes >= options.bytes_per_fragment
            or pending_source >= options.source_bytes_per_fragment
        ):
            flush()

    def drain(until: int) -> None:
        while len(running) > until:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=5.0)
            now = time.monotonic()
            for ref in ready:
                job, row_ref, _, size = running.pop(ref)
                try:
                    record(ray.get(ref), row_ref)
                except (ray.exceptions.RayError, OSError) as exc:
                    # A worker that died (after Ray's own retries) or a lost object: the clip failed
                    # for a system reason; record it and carry on.
                    row = failed_row(job, config, "worker_error", f"{type(exc).__name__}: {exc}"[:2000], size)
                    record(summary(row), ray.put(row))
            for ref, (job, row_ref, submitted, size) in list(running.items()):
                if now - submitted > deadline_s:
                    ray.cancel(ref, force=True)
                    running.pop(ref)
                    message = f"{job.shard}/{job.member}: no result after {deadline_s:.0f} s; task cancelled"
                    row = failed_row(job, config, "timeout", message, size)
                    record(summary(row), ray.put(row))

    for job, data in clips:
        drain(options.max_in_flight - 1)
        summary_ref, row_ref = _transcode_task.remote(job, data, config)
        running[summary_ref] = (job, row_ref, time.monotonic(), len(data))
        del data
    drain(0)
    flush()
    for fragments in ray.get(writers):
        outcome.fragments.extend(fragments)
    outcome.seconds = time.monotonic() - started
    return outcome
