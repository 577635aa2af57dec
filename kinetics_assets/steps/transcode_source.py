"""One shard's input for the transcode step: where it is, its clips as jobs, and its failed rows
(downloads that failed, members over the size limit) that are never transcoded.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from kinetics_assets.ingest.archive import SkippedMember, iter_video_members
from kinetics_assets.ingest.download import read_failed_downloads, read_verified
from kinetics_assets.ingest.layout import ShardLayout
from kinetics_assets.steps.transcode_clip import ClipJob, failed_row, make_job

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from kinetics_assets.ingest.annotations import Annotation
    from kinetics_assets.ingest.shards import Shard
    from kinetics_assets.limits import Limits
    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.table.video_row import VideoRow


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
class ShardRun:
    """What the driver keeps about one shard between its first clip and its commit."""

    source: ShardSource
    started: float
    member_ids: list[str] = field(default_factory=list)
    skipped: list[SkippedMember] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)
    previous_attempts: dict[str, int] = field(default_factory=dict)
    counts: collections.Counter = field(default_factory=collections.Counter)


def local_source(shard: Shard, source: Path) -> ShardSource:
    return ShardSource(shard, lambda: contextlib.nullcontext(source), sidecar_sha(source))


def sidecar_sha(path: Path) -> str | None:
    verified = read_verified(path)
    return verified.sha256 if verified else None


def no_download(shard: Shard, where: Path) -> str:
    return (
        f"shard {shard.key}: no verified download at {where}; materialize raw_archives for this "
        "partition first (or select '*transcoded_videos' to include everything upstream)"
    )


def shard_clips(
    source: Path, run: ShardRun, annotations: dict[str, Annotation], limits: Limits, archive_sha: str | None
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
        sha = archive_sha if not source.is_dir() else sidecar_sha(source / member)
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


def failed_download_rows(
    source: Path, shard: Shard, annotations: dict[str, Annotation], config: TranscodeConfig, skip_ids: set[str]
) -> list[VideoRow]:
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


def too_large_rows(
    skipped: list[SkippedMember],
    shard: Shard,
    annotations: dict[str, Annotation],
    config: TranscodeConfig,
    skip_ids: set[str],
) -> list[VideoRow]:
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
            rows.append(
                failed_row(job, config, "limit_exceeded", f"{shard.key}/{entry.reason}", source_bytes=entry.size)
            )
    return rows


def _source_url(shard: Shard, member: str) -> str:
    if shard.kind == "archive":
        return shard.url
    by_name = {PurePosixPath(url).name: url for url in shard.urls}
    return by_name.get(PurePosixPath(member).name, member)
