"""The `transcoded_videos` step for many shards: archive members -> one window of clips -> one
Lance commit per shard.

Plain orchestration (no Dagster, no Ray): the asset passes in where things are, how to log, and the
executor that runs the clips (`steps.clip_window.TranscodeExecutor`: on Ray, or in this process).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import av

from kinetics_assets.ingest.archive import SkippedMember, iter_video_members
from kinetics_assets.ingest.download import read_failed_downloads, read_verified
from kinetics_assets.ingest.layout import ShardLayout
from kinetics_assets.limits import DEFAULT_LIMITS, Limits
from kinetics_assets.steps.checks import (
    BLOB_SIZES_POSITIVE,
    FAILURE_RATE,
    OK_ROWS_DECODE,
    ONE_ROW_PER_MEMBER,
    VIDEO_ID_UNIQUE,
    Verdict,
    Verdicts,
)
from kinetics_assets.steps.failures import ShardFailure, UpstreamMissing
from kinetics_assets.steps.progress import Progress
from kinetics_assets.steps.transcode_clip import (
    PIPELINE_VERSION,
    ClipJob,
    ClipSummary,
    encoder_settings,
    failed_row,
    make_job,
    summary,
)
from kinetics_assets.table import commit_shard, ensure_table, open_table, shard_rows

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    import lance

    from kinetics_assets.ingest.annotations import Annotation
    from kinetics_assets.ingest.shards import Shard
    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.steps.clip_window import ShardTranscodeOutcome, TranscodeExecutor

TranscodeMode = Literal["full", "retry_failed", "unchanged"]
"""`full`: every clip transcoded; `retry_failed`: only failed or missing clips, ok rows kept;
`unchanged`: the shard was already committed from this input with these settings, nothing done."""


@dataclass(frozen=True, kw_only=True)
class ClipFailure:
    """A clip of the shard that has no video, and why."""

    video_id: str
    error_type: str | None
    error_message: str | None


def _failures(clips: Iterable[ClipSummary]) -> list[ClipFailure]:
    return [
        ClipFailure(video_id=c.video_id, error_type=c.error_type, error_message=c.error_message)
        for c in clips
        if c.status != "ok"
    ]


@dataclass
class TranscodeStepResult:
    shard: str
    mode: TranscodeMode
    members: int
    """Video members of the shard's source (the archive or video folder)."""
    processed: int
    kept: int
    """Ok rows kept from an earlier run (retry-failed mode)."""
    ok: int
    failed: int
    failures: list[ClipFailure]
    bytes_in: int
    bytes_out: int
    cpu_seconds: float
    seconds: float
    version: int
    commit_attempts: int
    checks: Verdicts = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    """Entries of the source that are not clips: {"member", "kind", "reason"} (unsafe, junk, ...)."""


def _clips(
    source: Path, run: _ShardRun, annotations: dict[str, Annotation], limits: Limits, archive_sha: str | None
) -> Iterator[tuple[ClipJob, bytes]]:
    shard = run.source.shard
    seen: set[str] = set()
    members = iter_video_members(
        source,
        label=shard.key,
        max_member_bytes=limits.max_member_bytes,
        max_total_bytes=limits.max_shard_read_bytes,
        on_skip=run.skipped.append,
    )
    for member, data in members:
        sha = archive_sha if not source.is_dir() else _sidecar_sha(source / member)
        job = make_job(
            member,
            shard=shard.key,
            release=shard.release,
            source_url=_source_url(shard, member),
            annotations=annotations,
            source_sha256=sha,
        )
        if job.video_id in seen:
            # Two members with one clip name (e.g. in two class folders): keep both, keyed by path.
            unique = f"{shard.key}/{PurePosixPath(member).with_suffix('').as_posix()}"
            job = dataclasses.replace(job, video_id=unique)
        seen.add(job.video_id)
        run.member_ids.append(job.video_id)
        if job.video_id in run.kept:
            continue
        attempts = run.previous_attempts.get(job.video_id, 0) + 1
        if attempts != job.attempts:
            job = dataclasses.replace(job, attempts=attempts)
        yield job, data


def _failed_download_rows(
    source: Path, shard: Shard, annotations: dict[str, Annotation], config: TranscodeConfig, skip_ids: set[str]
) -> list[dict]:
    if not source.is_dir():
        return []
    rows = []
    for failure in read_failed_downloads(Path(ShardLayout(shard=shard, source=str(source)).failed_downloads)):
        job = make_job(
            failure.name, shard=shard.key, release=shard.release, source_url=failure.url, annotations=annotations
        )
        if job.video_id not in skip_ids:
            rows.append(failed_row(job, config, "download_failed", f"{shard.key}: {failure.url}: {failure.error}"))
    return rows


def _too_large_rows(
    skipped: list[SkippedMember],
    shard: Shard,
    annotations: dict[str, Annotation],
    config: TranscodeConfig,
    skip_ids: set[str],
) -> list[dict]:
    """Members over max_member_bytes were never read: each is a failed row, the shard goes on."""
    rows = []
    for entry in skipped:
        if entry.kind != "too_large":
            continue
        job = make_job(
            entry.name,
            shard=shard.key,
            release=shard.release,
            source_url=_source_url(shard, entry.name),
            annotations=annotations,
        )
        if job.video_id not in skip_ids:
            rows.append(failed_row(job, config, "limit_exceeded", f"{shard.key}/{entry.reason}", entry.size))
    return rows


def _source_url(shard: Shard, member: str) -> str:
    if shard.kind == "archive":
        return shard.url
    by_name = {PurePosixPath(url).name: url for url in shard.urls}
    return by_name.get(PurePosixPath(member).name, member)


@dataclass(frozen=True)
class ShardSource:
    """Where one shard's verified input is: `open()` gives it as a local path for the duration of a
    `with` block (staged from object storage when it lives there).
    """

    shard: Shard
    open: Callable[[], AbstractContextManager[Path]]
    sha256: str | None = None
    """The verified archive's sha256 (None for video-list shards): with the settings, it tells
    whether the shard in the table came from this very input."""


@dataclass
class _ShardRun:
    """What the driver keeps about one shard between its first clip and its commit."""

    source: ShardSource
    started: float
    member_ids: list[str] = field(default_factory=list)
    skipped: list[SkippedMember] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)
    previous_attempts: dict[str, int] = field(default_factory=dict)
    counts: collections.Counter = field(default_factory=collections.Counter)


def _local_source(shard: Shard, source: Path) -> ShardSource:
    return ShardSource(shard, lambda: contextlib.nullcontext(source), _sidecar_sha(source))


def _sidecar_sha(path: Path) -> str | None:
    verified = read_verified(path)
    return verified.sha256 if verified else None


def transcode_step(shard: Shard, source: Path, **kwargs: Any) -> TranscodeStepResult:
    """Transcode one shard's clips and replace its rows in the table in one commit.

    Of `limits`, the archive-reading ones apply here (the frame limits travel in `config`): a member
    over max_member_bytes becomes a failed `limit_exceeded` row, and a source over
    max_shard_read_bytes raises ArchiveLimitExceeded before anything is committed. Keyword arguments
    are those of `transcode_shards`.
    """
    if not source.exists():
        raise UpstreamMissing(_no_download(shard, source))
    kwargs.setdefault("skip_committed", False)
    (result,) = transcode_shards([_local_source(shard, source)], raise_errors=True, **kwargs)
    if not isinstance(result, ShardFailure):
        return result
    raise RuntimeError(result.error)  # not reached: with `raise_errors` a failed shard raises


def _no_download(shard: Shard, where: Path) -> str:
    return (
        f"shard {shard.key}: no verified download at {where}; materialize raw_archives for this "
        "partition first (or select '*transcoded_videos' to include everything upstream)"
    )


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
    run = _TranscodeRun(
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


class _TranscodeRun:
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
        self._runs: dict[str, _ShardRun] = {}
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
        result = _unchanged_result(self._ds, source, self._config, started, max_failure_rate=self._max_failure_rate)
        if result is not None:
            self._log(f"shard {source.shard.key}: already committed from this input with these settings; skipped")
            self._progress.skipped(result.members)
        return result

    def _start(self, source: ShardSource, started: float) -> _ShardRun:
        shard = source.shard
        run = self._runs[shard.key] = _ShardRun(source, started)
        if self._retry_failed_only:
            old = shard_rows(self._ds, shard.key, ["video_id", "status", "attempts"]).to_pylist()
            run.kept = {r["video_id"] for r in old if r["status"] == "ok"}
            run.previous_attempts = {r["video_id"]: r["attempts"] or 1 for r in old}
            self._log(f"shard {shard.key}: retry-failed mode keeps {len(run.kept)} ok rows")
        self._window.open_shard(shard.key)
        return run

    def _feed(self, run: _ShardRun) -> Iterator[TranscodeStepResult | ShardFailure]:
        """Every clip of the shard's source into the window, then its failed rows, then close it."""
        source, shard = run.source, run.source.shard
        with source.open() as path:
            if not path.exists():
                raise UpstreamMissing(_no_download(shard, path))
            for job, data in _clips(path, run, self._annotations, self._limits, source.sha256):
                yield from self._committed(self._window.submit(shard.key, job, data))
            # Videos of a video-list shard that could not be downloaded, and members over the size
            # limit, are failed rows too.
            extra = _failed_download_rows(path, shard, self._annotations, self._config, run.kept)
            extra += _too_large_rows(run.skipped, shard, self._annotations, self._config, run.kept)
        run.member_ids.extend(row["video_id"] for row in extra)
        self._window.add_rows(shard.key, extra)
        yield from self._committed(self._window.close_shard(shard.key))

    def _committed(self, outcomes: list[ShardTranscodeOutcome]) -> Iterator[TranscodeStepResult | ShardFailure]:
        """Commit each shard the window handed back; a failed commit fails that shard only."""
        for outcome in outcomes:
            run = self._runs.pop(outcome.shard)
            try:
                result = _commit(
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


def _unchanged_result(
    ds: lance.LanceDataset, source: ShardSource, config: TranscodeConfig, started: float, *, max_failure_rate: float
) -> TranscodeStepResult | None:
    """The shard's result without doing anything, when its committed rows came from this input."""
    if source.sha256 is None:
        return None
    rows = shard_rows(
        ds,
        source.shard.key,
        ["video_id", "status", "error_type", "error_message", "encoder", "pipeline_version", "source_sha256"],
    ).to_pylist()
    encoder = encoder_settings(config)
    if not rows or any(
        (r["encoder"], r["pipeline_version"], r["source_sha256"]) != (encoder, PIPELINE_VERSION, source.sha256)
        for r in rows
    ):
        return None
    failures = _failures(summary(r) for r in rows)
    ids = [r["video_id"] for r in rows]
    result = TranscodeStepResult(
        shard=source.shard.key,
        mode="unchanged",
        members=len(rows),
        processed=0,
        kept=len(rows) - len(failures),
        ok=0,
        failed=len(failures),
        failures=failures,
        bytes_in=0,
        bytes_out=0,
        cpu_seconds=0.0,
        seconds=0.0,
        version=ds.version,
        commit_attempts=0,
    )
    # The rows are those an earlier run checked, decode included; the cheap checks run again.
    result.checks = check_shard_rows(ds, source.shard.key, ids, max_failure_rate=max_failure_rate, decode=False)
    result.seconds = time.monotonic() - started
    return result


def _commit(
    run: _ShardRun,
    outcome: ShardTranscodeOutcome,
    *,
    lance_uri: str,
    storage_options: dict | None,
    retry_failed_only: bool,
    properties: dict[str, str] | None,
    max_failure_rate: float,
) -> TranscodeStepResult:
    shard = run.source.shard
    processed_ids = {s.video_id for s in outcome.summaries}
    replace_ids = None
    if retry_failed_only:
        # Also drop rows of members that are gone from the source, so the shard mirrors it.
        stale = {r for r in run.previous_attempts if r not in set(run.member_ids)}
        replace_ids = processed_ids | stale
    mode: TranscodeMode = "retry_failed" if retry_failed_only else "full"
    commit = commit_shard(
        lance_uri,
        shard.key,
        outcome.fragments,
        replace_ids=replace_ids,
        storage_options=storage_options,
        properties={"step": "transcoded_videos", "mode": mode, **(properties or {})},
    )
    summaries = outcome.summaries
    failures = _failures(summaries)
    result = TranscodeStepResult(
        shard=shard.key,
        mode=mode,
        members=len(run.member_ids),
        processed=len(summaries),
        kept=len(run.kept & set(run.member_ids)),
        ok=sum(1 for s in summaries if s.status == "ok"),
        failed=len(failures),
        failures=failures,
        bytes_in=sum(s.source_bytes or 0 for s in summaries),
        bytes_out=sum(s.bytes or 0 for s in summaries),
        cpu_seconds=sum(s.cpu_seconds or 0.0 for s in summaries),
        seconds=0.0,
        version=commit.version,
        commit_attempts=commit.attempts,
        skipped=[{"member": s.name, "kind": s.kind, "reason": s.reason} for s in run.skipped if s.kind != "too_large"],
    )
    result.checks = check_shard_rows(
        open_table(lance_uri, storage_options, version=commit.version),
        shard.key,
        run.member_ids,
        max_failure_rate=max_failure_rate,
    )
    result.seconds = time.monotonic() - run.started
    return result


def check_shard_rows(
    ds: lance.LanceDataset, shard: str, member_ids: list[str], *, max_failure_rate: float, decode: bool = True
) -> Verdicts:
    """Verify the committed shard against its source; each check reads the table back. Without
    `decode` the ok videos are not opened again (rows an earlier run already decoded).
    """
    rows = shard_rows(ds, shard, ["video_id", "status", "bytes", "width", "height", "frames"]).to_pylist()
    ids = [r["video_id"] for r in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    missing = sorted(set(member_ids) - set(ids))
    extra = sorted(set(ids) - set(member_ids))
    ok_rows = [r for r in rows if r["status"] == "ok"]
    failed = len(rows) - len(ok_rows)
    rate = failed / len(rows) if rows else 0.0
    bad_sizes = [r["video_id"] for r in ok_rows if not r["bytes"] or r["bytes"] <= 0]
    undecodable = _undecodable(ds, shard, ok_rows) if decode else []
    return {
        ONE_ROW_PER_MEMBER.name: Verdict(
            not missing and not extra and len(rows) == len(member_ids),
            {"members": len(member_ids), "rows": len(rows), "missing": missing[:20], "extra": extra[:20]},
        ),
        VIDEO_ID_UNIQUE.name: Verdict(not duplicates, {"duplicates": duplicates[:20]}),
        FAILURE_RATE.name: Verdict(
            rate <= max_failure_rate, {"failed": failed, "rows": len(rows), "rate": rate, "max": max_failure_rate}
        ),
        OK_ROWS_DECODE.name: Verdict(
            not undecodable,
            {
                "checked": len(ok_rows) if decode else 0,
                "problems": undecodable[:20],
                **({} if decode else {"decoded_when_committed": True}),
            },
        ),
        BLOB_SIZES_POSITIVE.name: Verdict(not bad_sizes, {"empty": bad_sizes[:20]}),
    }


def _undecodable(ds: lance.LanceDataset, shard: str, ok_rows: list[dict]) -> list[str]:
    """Open every ok video and decode its first frame; its size must match the row."""
    if not ok_rows:
        return []
    table = ds.to_table(
        columns=["video_id"],
        filter=f"shard = '{shard.replace(chr(39), chr(39) * 2)}' AND status = 'ok'",
        with_row_id=True,
    )
    by_id = {r["video_id"]: r for r in ok_rows}
    problems = []
    blobs = ds.take_blobs("video", ids=table["_rowid"].to_pylist())
    for video_id, blob in zip(table["video_id"].to_pylist(), blobs, strict=True):
        row = by_id[video_id]
        if blob is None:  # a null blob: an ok row without its video
            problems.append(f"{video_id}: the row has no video bytes")
            continue
        try:
            with av.open(blob, mode="r") as container:
                frame = next(container.decode(video=0))
                if (frame.width, frame.height) != (row["width"], row["height"]):
                    problems.append(
                        f"{video_id}: decodes at {frame.width}x{frame.height}, row says {row['width']}x{row['height']}"
                    )
        except Exception as exc:  # noqa: BLE001 - any decoder failure is what this check reports
            problems.append(f"{video_id}: {type(exc).__name__}: {exc}")
    return problems
