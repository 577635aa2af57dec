"""The `transcoded_videos` step for many shards: archive members -> one Ray window -> one Lance
commit per shard.

Plain orchestration (no Dagster): the asset passes in where things are and how to log.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import av
import lance

from kinetics_assets.ingest.annotations import Annotation
from kinetics_assets.ingest.archive import SkippedMember, iter_video_members
from kinetics_assets.steps.transcode_clip import PIPELINE_VERSION, ClipJob, encoder_settings, failed_row, make_job
from kinetics_assets.ingest.download import sidecar_path
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
from kinetics_assets.steps.progress import Progress
from kinetics_assets.steps.raw import FAILED_DOWNLOADS, ShardFailure, UpstreamMissing
from kinetics_assets.distributed.transcode import RayTranscodeOptions, ShardTranscodeOutcome, TranscodeWindow
from kinetics_assets.ingest.shards import Shard
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.table.video_table import commit_shard, ensure_table, open_table, shard_rows


@dataclass
class TranscodeStepResult:
    shard: str
    mode: str
    members: int
    """Video members of the shard's source (the archive or video folder)."""
    processed: int
    kept: int
    """Ok rows kept from an earlier run (retry-failed mode)."""
    ok: int
    failed: int
    failures: list[dict]
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
    members = iter_video_members(source, label=shard.key, max_member_bytes=limits.max_member_bytes,
                                 max_total_bytes=limits.max_shard_read_bytes, on_skip=run.skipped.append)
    for member, data in members:
        sha = archive_sha if not source.is_dir() else _sidecar_sha(source / member)
        job = make_job(member, shard=shard.key, release=shard.release, source_url=_source_url(shard, member),
                       annotations=annotations, source_sha256=sha)
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


def _failed_download_rows(source: Path, shard: Shard, annotations, config: TranscodeConfig, skip_ids: set[str]) -> list[dict]:
    record = source / FAILED_DOWNLOADS if source.is_dir() else None
    if record is None or not record.exists():
        return []
    rows = []
    for failure in json.loads(record.read_text()):
        job = make_job(failure["name"], shard=shard.key, release=shard.release, source_url=failure["url"], annotations=annotations)
        if job.video_id not in skip_ids:
            rows.append(failed_row(job, config, "download_failed", f"{shard.key}: {failure['url']}: {failure['error']}"))
    return rows


def _too_large_rows(skipped: list[SkippedMember], shard: Shard, annotations, config: TranscodeConfig, skip_ids: set[str]) -> list[dict]:
    """Members over max_member_bytes were never read: each is a failed row, the shard goes on."""
    rows = []
    for entry in skipped:
        if entry.kind != "too_large":
            continue
        job = make_job(entry.name, shard=shard.key, release=shard.release, source_url=_source_url(shard, entry.name), annotations=annotations)
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
    `with` block (staged from object storage when it lives there)."""

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
    sidecar = sidecar_path(path)
    return json.loads(sidecar.read_text()).get("sha256") if sidecar.is_file() else None


def transcode_step(shard: Shard, source: Path, **kwargs) -> TranscodeStepResult:
    """Transcode one shard's clips and replace its rows in the table in one commit.

    Of `limits`, the archive-reading ones apply here (the frame limits travel in `config`): a member
    over max_member_bytes becomes a failed `limit_exceeded` row, and a source over
    max_shard_read_bytes raises ArchiveLimitExceeded before anything is committed. Keyword arguments
    are those of `transcode_shards`."""
    if not source.exists():
        raise UpstreamMissing(_no_download(shard, source))
    kwargs.setdefault("skip_committed", False)
    (result,) = transcode_shards([_local_source(shard, source)], raise_errors=True, **kwargs)
    return result


def _no_download(shard: Shard, where) -> str:
    return (f"shard {shard.key}: no verified download at {where}; materialize raw_archives for this "
            "partition first (or select '*transcoded_videos' to include everything upstream)")


def transcode_shards(
    sources: Iterable[ShardSource],
    *,
    lance_uri: str,
    storage_options: dict | None,
    annotations: dict[str, Annotation],
    config: TranscodeConfig,
    retry_failed_only: bool = False,
    skip_committed: bool = True,
    options: RayTranscodeOptions = RayTranscodeOptions(),
    properties: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
    limits: Limits = DEFAULT_LIMITS,
    expected_clips: int | None = None,
    raise_errors: bool = False,
    max_failure_rate: float = 1.0,
) -> Iterator[TranscodeStepResult | ShardFailure]:
    """Transcode many shards through one Ray window, committing each shard on its own, in one
    commit, as soon as its last clip is written; results come back in the order shards complete.

    A shard whose input is missing or unreadable (or over a limit) becomes a ShardFailure and the
    others go on (`raise_errors` raises instead, for single-shard callers). With `skip_committed`, a
    shard whose rows in the table all came from the same input (sha256) with the same encoder
    settings and pipeline version is not transcoded again (its result has mode `unchanged`). Each
    result carries its shard's check verdicts; `max_failure_rate` bounds the `failure_rate` check
    (1.0 lets every clip fail)."""
    ds = ensure_table(lance_uri, storage_options)
    runs: dict[str, _ShardRun] = {}
    progress = Progress(log, "transcode", "clip", expected_clips)

    def on_clip(shard: str, row: dict) -> None:
        counts = runs[shard].counts
        counts[row["status"]] += 1
        if row["status"] != "ok":
            log(f"shard {shard}: {row['video_id']} failed ({row['error_type']}): {row['error_message']}")
        done = sum(counts.values())
        if done % 25 == 0:
            log(f"shard {shard}: {done} clips transcoded ({counts['ok']} ok, {counts['failed']} failed)")
        progress.advance()

    window = TranscodeWindow(uri=lance_uri, storage_options=storage_options, config=config, options=options,
                             on_clip=on_clip)

    def failure(shard: str, exc: Exception) -> ShardFailure:
        if raise_errors:
            raise exc
        message = str(exc) if shard in str(exc) else f"shard {shard}: {exc}"
        log(f"shard {shard} FAILED: {type(exc).__name__}: {message}")
        return ShardFailure(shard, f"{type(exc).__name__}: {message}")

    def finished(outcomes: list[ShardTranscodeOutcome]) -> Iterator[TranscodeStepResult | ShardFailure]:
        for outcome in outcomes:
            run = runs.pop(outcome.shard)
            try:
                result = _commit(run, outcome, lance_uri=lance_uri, storage_options=storage_options,
                                 retry_failed_only=retry_failed_only, properties=properties,
                                 max_failure_rate=max_failure_rate)
            except Exception as exc:  # this shard's commit failed; the others are unaffected
                yield failure(outcome.shard, exc)
                continue
            log(f"shard {outcome.shard}: committed {result.processed} clips ({result.ok} ok, {result.failed} "
                f"failed) as table version {result.version} in {result.seconds:.1f} s")
            yield result

    for source in sources:
        shard = source.shard
        started = time.monotonic()
        try:
            if skip_committed and not retry_failed_only:
                unchanged = _unchanged_result(ds, source, config, lance_uri, storage_options, started,
                                              max_failure_rate=max_failure_rate)
                if unchanged is not None:
                    log(f"shard {shard.key}: already committed from this input with these settings; skipped")
                    progress.skipped(unchanged.members)
                    yield unchanged
                    continue
            run = runs[shard.key] = _ShardRun(source, started)
            if retry_failed_only:
                old = shard_rows(ds, shard.key, ["video_id", "status", "attempts"]).to_pylist()
                run.kept = {r["video_id"] for r in old if r["status"] == "ok"}
                run.previous_attempts = {r["video_id"]: r["attempts"] or 1 for r in old}
                log(f"shard {shard.key}: retry-failed mode keeps {len(run.kept)} ok rows")
            window.open_shard(shard.key)
            with source.open() as path:
                if not path.exists():
                    raise UpstreamMissing(_no_download(shard, path))
                for job, data in _clips(path, run, annotations, limits, source.sha256):
                    yield from finished(window.submit(shard.key, job, data))
                # Videos of a video-list shard that could not be downloaded, and members over the
                # size limit, are failed rows too.
                extra = _failed_download_rows(path, shard, annotations, config, run.kept)
                extra += _too_large_rows(run.skipped, shard, annotations, config, run.kept)
            run.member_ids.extend(row["video_id"] for row in extra)
            window.add_rows(shard.key, extra)
            yield from finished(window.close_shard(shard.key))
        except Exception as exc:  # the shard's input failed: record it and go on with the others
            window.abandon(shard.key)
            runs.pop(shard.key, None)
            yield failure(shard.key, exc)
    yield from finished(window.finish())
    progress.close()


def _unchanged_result(ds, source: ShardSource, config: TranscodeConfig, lance_uri: str,
                      storage_options: dict | None, started: float, *,
                      max_failure_rate: float) -> TranscodeStepResult | None:
    """The shard's result without doing anything, when its committed rows came from this input."""
    if source.sha256 is None:
        return None
    rows = shard_rows(ds, source.shard.key, ["video_id", "status", "error_type", "error_message", "encoder",
                                             "pipeline_version", "source_sha256"]).to_pylist()
    encoder = encoder_settings(config)
    if not rows or any((r["encoder"], r["pipeline_version"], r["source_sha256"]) !=
                       (encoder, PIPELINE_VERSION, source.sha256) for r in rows):
        return None
    failures = [{k: r[k] for k in ("video_id", "status", "error_type", "error_message")}
                for r in rows if r["status"] != "ok"]
    ids = [r["video_id"] for r in rows]
    result = TranscodeStepResult(
        shard=source.shard.key, mode="unchanged", members=len(rows), processed=0,
        kept=len(rows) - len(failures), ok=0, failed=len(failures), failures=failures, bytes_in=0, bytes_out=0,
        cpu_seconds=0.0, seconds=0.0, version=ds.version, commit_attempts=0,
    )
    # The rows are those an earlier run checked, decode included; the cheap checks run again.
    result.checks = check_shard_rows(ds, source.shard.key, ids, max_failure_rate=max_failure_rate, decode=False)
    result.seconds = time.monotonic() - started
    return result


def _commit(run: _ShardRun, outcome: ShardTranscodeOutcome, *, lance_uri: str, storage_options: dict | None,
            retry_failed_only: bool, properties: dict[str, str] | None,
            max_failure_rate: float) -> TranscodeStepResult:
    shard = run.source.shard
    processed_ids = {s["video_id"] for s in outcome.summaries}
    replace_ids = None
    if retry_failed_only:
        # Also drop rows of members that are gone from the source, so the shard mirrors it.
        stale = {r for r in run.previous_attempts if r not in set(run.member_ids)}
        replace_ids = processed_ids | stale
    mode = "retry_failed" if retry_failed_only else "full"
    commit = commit_shard(
        lance_uri,
        shard.key,
        outcome.fragments,
        replace_ids=replace_ids,
        storage_options=storage_options,
        properties={"step": "transcoded_videos", "mode": mode, **(properties or {})},
    )
    summaries = outcome.summaries
    failures = [s for s in summaries if s["status"] != "ok"]
    result = TranscodeStepResult(
        shard=shard.key,
        mode=mode,
        members=len(run.member_ids),
        processed=len(summaries),
        kept=len(run.kept & set(run.member_ids)),
        ok=sum(1 for s in summaries if s["status"] == "ok"),
        failed=len(failures),
        failures=failures,
        bytes_in=sum(s["source_bytes"] or 0 for s in summaries),
        bytes_out=sum(s["bytes"] or 0 for s in summaries),
        cpu_seconds=sum(s["cpu_seconds"] or 0.0 for s in summaries),
        seconds=0.0,
        version=commit.version,
        commit_attempts=commit.attempts,
        skipped=[{"member": s.name, "kind": s.kind, "reason": s.reason} for s in run.skipped if s.kind != "too_large"],
    )
    result.checks = check_shard_rows(
        open_table(lance_uri, storage_options, version=commit.version), shard.key, run.member_ids,
        max_failure_rate=max_failure_rate,
    )
    result.seconds = time.monotonic() - run.started
    return result


def check_shard_rows(
    ds: lance.LanceDataset, shard: str, member_ids: list[str], *, max_failure_rate: float, decode: bool = True
) -> Verdicts:
    """Verify the committed shard against its source; each check reads the table back. Without
    `decode` the ok videos are not opened again (rows an earlier run already decoded)."""
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
        FAILURE_RATE.name: Verdict(rate <= max_failure_rate,
                                   {"failed": failed, "rows": len(rows), "rate": rate, "max": max_failure_rate}),
        OK_ROWS_DECODE.name: Verdict(not undecodable, {"checked": len(ok_rows) if decode else 0,
                                                       "problems": undecodable[:20],
                                                       **({} if decode else {"decoded_when_committed": True})}),
        BLOB_SIZES_POSITIVE.name: Verdict(not bad_sizes, {"empty": bad_sizes[:20]}),
    }


def _undecodable(ds: lance.LanceDataset, shard: str, ok_rows: list[dict]) -> list[str]:
    """Open every ok video and decode its first frame; its size must match the row."""
    if not ok_rows:
        return []
    table = ds.to_table(columns=["video_id"], filter=f"shard = '{shard.replace(chr(39), chr(39) * 2)}' AND status = 'ok'", with_row_id=True)
    by_id = {r["video_id"]: r for r in ok_rows}
    problems = []
    blobs = ds.take_blobs("video", ids=table["_rowid"].to_pylist())
    for video_id, blob in zip(table["video_id"].to_pylist(), blobs):
        row = by_id[video_id]
        try:
            with av.open(blob) as container:
                frame = next(container.decode(video=0))
                if (frame.width, frame.height) != (row["width"], row["height"]):
                    problems.append(f"{video_id}: decodes at {frame.width}x{frame.height}, row says {row['width']}x{row['height']}")
        except Exception as exc:  # any decoder failure is what this check reports
            problems.append(f"{video_id}: {type(exc).__name__}: {exc}")
    return problems
