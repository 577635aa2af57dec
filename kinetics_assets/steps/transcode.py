"""The `transcoded_videos` step for many shards: archive members -> one window of clips -> one
Lance commit per shard.

Plain orchestration (no Dagster, no Ray): the asset passes in where things are, how to log, and the
executor that runs the clips (`steps.clip_window.TranscodeExecutor`: on Ray, or in this process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kinetics_assets.limits import DEFAULT_LIMITS, Limits
from kinetics_assets.steps.failures import ShardFailure, UpstreamMissing
from kinetics_assets.steps.transcode_run import TranscodeRun
from kinetics_assets.steps.transcode_source import ShardSource, local_source, no_download

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from kinetics_assets.ingest.annotations import Annotation
    from kinetics_assets.ingest.shards import Shard
    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.steps.clip_window import TranscodeExecutor
    from kinetics_assets.steps.transcode_result import TranscodeStepResult


def transcode_step(shard: Shard, source: Path, **kwargs: Any) -> TranscodeStepResult:
    """Transcode one shard's clips and replace its rows in the table in one commit.

    Of `limits`, the archive-reading ones apply here (the frame limits travel in `config`): a member
    over max_member_bytes becomes a failed `limit_exceeded` row, and a source over
    max_shard_read_bytes raises ArchiveLimitExceeded before anything is committed. Keyword arguments
    are those of `transcode_shards`.
    """
    if not source.exists():
        raise UpstreamMissing(no_download(shard, source))
    kwargs.setdefault("skip_committed", False)
    (result,) = transcode_shards([local_source(shard, source)], raise_errors=True, **kwargs)
    if not isinstance(result, ShardFailure):
        return result
    raise RuntimeError(result.error)  # not reached: with `raise_errors` a failed shard raises


def transcode_shards(
    sources: Iterable[ShardSource],
    *,
    lance_uri: str,
    storage_options: dict | None,
    annotations: dict[str, Annotation],
    config: TranscodeConfig,
    executor: TranscodeExecutor,
    retry_failed_only: bool = False,
    skip_committed: bool = True,
    properties: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
    limits: Limits = DEFAULT_LIMITS,
    expected_clips: int | None = None,
    raise_errors: bool = False,
    max_failure_rate: float = 1.0,
) -> Iterator[TranscodeStepResult | ShardFailure]:
    """Transcode many shards through one window of `executor`, committing each shard on its own, in
    one commit, as soon as its last clip is written; results come back in the order shards complete.

    A shard whose input is missing or unreadable (or over a limit) becomes a ShardFailure and the
    others go on (`raise_errors` raises instead, for single-shard callers). With `skip_committed`, a
    shard whose rows in the table all came from the same input (sha256) with the same encoder
    settings and pipeline version is not transcoded again (its result has mode `unchanged`). Each
    result carries its shard's check verdicts; `max_failure_rate` bounds the `failure_rate` check
    (1.0 lets every clip fail).
    """
    run = TranscodeRun(
        lance_uri=lance_uri,
        storage_options=storage_options,
        annotations=annotations,
        config=config,
        executor=executor,
        retry_failed_only=retry_failed_only,
        skip_committed=skip_committed,
        properties=properties,
        log=log,
        limits=limits,
        expected_clips=expected_clips,
        raise_errors=raise_errors,
        max_failure_rate=max_failure_rate,
    )
    for source in sources:
        yield from run.shard(source)
    yield from run.finish()
