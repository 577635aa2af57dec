"""One call of `transcode_shards`: shards fed into one executor window, each committed as it completes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kinetics_assets.steps.failures import ShardFailure, UpstreamMissing
from kinetics_assets.steps.progress import Progress
from kinetics_assets.steps.transcode_commit import commit_run, unchanged_result
from kinetics_assets.steps.transcode_source import (
    ShardRun,
    ShardSource,
    failed_download_rows,
    no_download,
    shard_clips,
    too_large_rows,
)
from kinetics_assets.table import ensure_table, shard_rows

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from kinetics_assets.ingest.annotations import Annotation
    from kinetics_assets.limits import Limits
    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.steps.clip_window import ShardTranscodeOutcome, TranscodeExecutor
    from kinetics_assets.steps.transcode_clip import ClipSummary
    from kinetics_assets.steps.transcode_result import TranscodeStepResult


class TranscodeRun:
    """One call of `transcode_shards`: its window, the shards in it, its progress."""

    def __init__(
        self,
        *,
        lance_uri: str,
        storage_options: dict | None,
        annotations: dict[str, Annotation],
        config: TranscodeConfig,
        executor: TranscodeExecutor,
        retry_failed_only: bool,
        skip_committed: bool,
        properties: dict[str, str] | None,
        log: Callable[[str], None],
        limits: Limits,
        expected_clips: int | None,
        raise_errors: bool,
        max_failure_rate: float,
    ) -> None:
        self._uri, self._storage_options = lance_uri, storage_options
        self._annotations, self._config, self._limits = annotations, config, limits
        self._retry_failed_only, self._skip_committed = retry_failed_only, skip_committed
        self._properties, self._log, self._raise_errors = properties, log, raise_errors
        self._max_failure_rate = max_failure_rate
        self._ds = ensure_table(lance_uri, storage_options)
        self._runs: dict[str, ShardRun] = {}
        self._progress = Progress(log, "transcode", "clip", expected_clips)
        self._window = executor.open_window(
            uri=lance_uri, storage_options=storage_options, config=config, on_clip=self._on_clip
        )

    def shard(self, source: ShardSource) -> Iterator[TranscodeStepResult | ShardFailure]:
        """Skip the shard or feed its clips to the window; yields the shards that completed meanwhile."""
        started = time.monotonic()
        try:
            unchanged = self._unchanged(source, started)
            if unchanged is not None:
                yield unchanged
                return
            yield from self._feed(self._start(source, started))
        except Exception as exc:  # noqa: BLE001 - the shard's input failed: recorded as a ShardFailure, the others go on
            self._window.abandon(source.shard.key)
            self._runs.pop(source.shard.key, None)
            yield self._failure(source.shard.key, exc)

    def finish(self) -> Iterator[TranscodeStepResult | ShardFailure]:
        yield from self._committed(self._window.finish())
        self._progress.close()

    def _unchanged(self, source: ShardSource, started: float) -> TranscodeStepResult | None:
        if not self._skip_committed or self._retry_failed_only:
            return None
        result = unchanged_result(self._ds, source, self._config, started, max_failure_rate=self._max_failure_rate)
        if result is not None:
            self._log(f"shard {source.shard.key}: already committed from this input with these settings; skipped")
            self._progress.skipped(result.members)
        return result

    def _start(self, source: ShardSource, started: float) -> ShardRun:
        shard = source.shard
        run = self._runs[shard.key] = ShardRun(source, started)
        if self._retry_failed_only:
            old = shard_rows(self._ds, shard.key, ["video_id", "status", "attempts"]).to_pylist()
            run.kept = {r["video_id"] for r in old if r["status"] == "ok"}
            run.previous_attempts = {r["video_id"]: r["attempts"] or 1 for r in old}
            self._log(f"shard {shard.key}: retry-failed mode keeps {len(run.kept)} ok rows")
        self._window.open_shard(shard.key)
        return run

    def _feed(self, run: ShardRun) -> Iterator[TranscodeStepResult | ShardFailure]:
        """Every clip of the shard's source into the window, then its failed rows, then close it."""
        source, shard = run.source, run.source.shard
        with source.open() as path:
            if not path.exists():
                raise UpstreamMissing(no_download(shard, path))
            for job, data in shard_clips(path, run, self._annotations, self._limits, source.sha256):
                yield from self._committed(self._window.submit(shard.key, job, data))
            # Videos of a video-list shard that could not be downloaded, and members over the size
            # limit, are failed rows too.
            extra = failed_download_rows(path, shard, self._annotations, self._config, run.kept)
            extra += too_large_rows(run.skipped, shard, self._annotations, self._config, run.kept)
        run.member_ids.extend(row.video_id for row in extra)
        self._window.add_rows(shard.key, extra)
        yield from self._committed(self._window.close_shard(shard.key))

    def _committed(self, outcomes: list[ShardTranscodeOutcome]) -> Iterator[TranscodeStepResult | ShardFailure]:
        """Commit each shard the window handed back; a failed commit fails that shard only."""
        for outcome in outcomes:
            run = self._runs.pop(outcome.shard)
            try:
                result = commit_run(
                    run,
                    outcome,
                    lance_uri=self._uri,
                    storage_options=self._storage_options,
                    retry_failed_only=self._retry_failed_only,
                    properties=self._properties,
                    max_failure_rate=self._max_failure_rate,
                )
            except Exception as exc:  # noqa: BLE001 - this shard's commit failed: recorded as a ShardFailure, the others go on
                yield self._failure(outcome.shard, exc)
                continue
            self._log(
                f"shard {outcome.shard}: committed {result.processed} clips ({result.ok} ok, "
                f"{result.failed} failed) as table version {result.version} in {result.seconds:.1f} s"
            )
            yield result

    def _on_clip(self, shard: str, clip: ClipSummary) -> None:
        counts = self._runs[shard].counts
        counts[clip.status] += 1
        if clip.status != "ok":
            self._log(f"shard {shard}: {clip.video_id} failed ({clip.error_type}): {clip.error_message}")
        done = sum(counts.values())
        if done % 25 == 0:
            self._log(f"shard {shard}: {done} clips transcoded ({counts['ok']} ok, {counts['failed']} failed)")
        self._progress.advance()

    def _failure(self, shard: str, exc: Exception) -> ShardFailure:
        if self._raise_errors:
            raise exc
        message = str(exc) if shard in str(exc) else f"shard {shard}: {exc}"
        self._log(f"shard {shard} FAILED: {type(exc).__name__}: {message}")
        return ShardFailure(shard, f"{type(exc).__name__}: {message}")
