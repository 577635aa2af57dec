"""The `raw_archives` step: fetch, verify and index shards where `ShardLayout` puts them, and read
back what it stored (no Dagster here).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from kinetics_assets.ingest import object_store
from kinetics_assets.ingest.annotations import parse_member_name
from kinetics_assets.ingest.archive import ArchiveIndex, verify_archive
from kinetics_assets.ingest.download import (
    DownloadConfig,
    DownloadResult,
    FailedDownload,
    Progress,
    VerifiedFile,
    download,
    download_async,
    read_verified,
    write_failed_downloads,
)
from kinetics_assets.ingest.layout import ShardLayout, annotations_path, url_file_name
from kinetics_assets.limits import DEFAULT_LIMITS
from kinetics_assets.steps.checks import ARCHIVE_VERIFIED, HAS_VIDEO_MEMBERS, MEMBER_NAMES_PARSE, Verdict, Verdicts
from kinetics_assets.steps.failures import ShardFailure, UpstreamMissing

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from kinetics_assets.ingest.shards import Shard


@dataclass
class RawShard:
    shard: str
    path: Path
    """The verified archive, or the folder of downloaded videos (a staging copy, gone after the
    upload, when the data root is on object storage)."""
    downloads: list[DownloadResult]
    index: ArchiveIndex
    failed: list[FailedDownload] = field(default_factory=list)
    """Videos of a video-list shard that could not be fetched."""
    location: str = ""
    """Where the shard's source lives for good: the local path, or its URI on object storage."""

    def __post_init__(self) -> None:
        self.location = self.location or str(self.path)

    @property
    def unparsable(self) -> list[str]:
        return [m for m in self.index.video_members if parse_member_name(m) is None]

    def checks(self, *, sha256: str) -> Verdicts:
        """The shard's verdicts; `sha256` is the verified content's digest (reaching here means it verified)."""
        unparsable = self.unparsable
        videos = len(self.index.video_members)
        return {
            ARCHIVE_VERIFIED.name: Verdict(passed=True, details={"sha256": sha256}),
            HAS_VIDEO_MEMBERS.name: Verdict(videos > 0, {"video_members": videos}),
            MEMBER_NAMES_PARSE.name: Verdict(
                not unparsable, {"unparsable": unparsable[:100], "count": len(unparsable)}
            ),
        }


def _stored_json(shard: Shard, uri: str, storage_options: dict[str, str] | None) -> dict | None:
    """A JSON file stored beside a shard's archive (its sidecar, its index), local or on object
    storage, without fetching the archive; None for video-list shards or when absent.
    """
    if shard.kind != "archive":
        return None
    if object_store.is_remote(uri):
        found = object_store.read_json(uri, storage_options)
    else:
        found = json.loads(Path(uri).read_text()) if Path(uri).is_file() else None
    return found if isinstance(found, dict) else None


def verified_sha256(shard: Shard, data_root: str, storage_options: dict[str, str] | None = None) -> str | None:
    """The sha256 of a shard's verified archive (None for video-list shards and unverified ones)."""
    verified = VerifiedFile.from_json(_stored_json(shard, ShardLayout.under(data_root, shard).sidecar, storage_options))
    return verified.sha256 if verified else None


def verified_video_count(shard: Shard, data_root: str, storage_options: dict[str, str] | None = None) -> int | None:
    """How many video members a verified archive holds, from its index (None when unknown)."""
    index = _stored_json(shard, ShardLayout.under(data_root, shard).index, storage_options)
    return len(index.get("video_members", [])) if index else None


def fetch_archive(
    layout: ShardLayout, config: DownloadConfig, progress: Progress | None = None,
    max_read_bytes: int | None = DEFAULT_LIMITS.max_shard_read_bytes,
) -> RawShard:  # fmt: skip
    """Download an archive shard to its local `layout`, verified and indexed. `max_read_bytes` bounds
    the uncompressed bytes the verification reads (a gzip bomb fails the download and leaves nothing
    behind).
    """
    shard, dest, index_file = layout.shard, layout.path, Path(layout.index)
    found: list[ArchiveIndex] = []

    def verify(part: Path) -> None:
        found.append(verify_archive(part, label=shard.key, max_total_bytes=max_read_bytes))

    result = download(shard.url, dest, config=config, verify=verify, label=shard.key, progress=progress)
    if found:
        index = found[-1]
        index_file.write_text(json.dumps(asdict(index)))
    elif index_file.exists():
        index = ArchiveIndex(**json.loads(index_file.read_text()))
    else:
        index = verify_archive(dest, label=shard.key, max_total_bytes=max_read_bytes)
        index_file.write_text(json.dumps(asdict(index)))
    return RawShard(shard.key, dest, [result], index)


async def _fetch_videos(layout: ShardLayout, config: DownloadConfig, parallel: int) -> list:
    shard = layout.shard
    names = [url_file_name(u) for u in shard.urls]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise ValueError(f"shard {shard.key}: several videos share the file name(s) {sorted(clashes)[:5]}")
    limit = asyncio.Semaphore(parallel)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(url: str) -> DownloadResult:
            async with limit:
                return await download_async(session, url, Path(layout.video(url)), config=config, label=shard.key)

        return list(await asyncio.gather(*(one(u) for u in shard.urls), return_exceptions=True))


def fetch_videos(layout: ShardLayout, config: DownloadConfig, parallel: int = 8) -> RawShard:
    """Download every video of a video-list shard into its local folder, a bounded number at once.

    A video that cannot be fetched is recorded (here and in the folder, for transcoded_videos to turn
    into a failed row) and the others go on.
    """
    shard, folder = layout.shard, layout.path
    folder.mkdir(parents=True, exist_ok=True)
    outcomes = asyncio.run(_fetch_videos(layout, config, parallel))
    results = [o for o in outcomes if isinstance(o, DownloadResult)]
    failed = [
        FailedDownload(name=url_file_name(url), url=url, error=f"{type(o).__name__}: {o}")
        for url, o in zip(shard.urls, outcomes, strict=True)
        if isinstance(o, BaseException)
    ]
    if any(not isinstance(o, Exception) for o in outcomes if isinstance(o, BaseException)):
        raise next(o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, Exception))
    write_failed_downloads(Path(layout.failed_downloads), failed)
    names = sorted(r.path.name for r in results)
    index = ArchiveIndex(
        members=names, video_members=names, junk=[], unsafe=[], total_bytes=sum(r.bytes for r in results)
    )
    return RawShard(shard.key, folder, results, index, failed)


def _fetch_local(
    layout: ShardLayout, config: DownloadConfig, progress: Progress | None, max_read_bytes: int | None
) -> RawShard:
    layout.path.parent.mkdir(parents=True, exist_ok=True)
    if layout.shard.kind == "archive":
        return fetch_archive(layout, config, progress, max_read_bytes)
    return fetch_videos(layout, config)


def fetch_shard(
    shard: Shard,
    data_root: str,
    config: DownloadConfig = DownloadConfig(),
    progress: Progress | None = None,
    *,
    storage_options: dict[str, str] | None = None,
    cache_dir: str | Path | None = None,
    max_read_bytes: int | None = DEFAULT_LIMITS.max_shard_read_bytes,
) -> RawShard:
    """Download and verify a shard under `data_root`. When that is object storage, the download is
    staged in `cache_dir` (where an interrupted one resumes), verified there, uploaded, and the
    staging copy removed; a shard already verified in the bucket is not fetched again.
    """
    stored = ShardLayout.under(data_root, shard)
    if not stored.is_remote:
        return _fetch_local(stored, config, progress, max_read_bytes)
    if cache_dir is None:
        raise ValueError(f"shard {shard.key}: data root {data_root} is on object storage; a cache_dir is needed")
    return _fetch_to_object_store(
        stored,
        ShardLayout.under(cache_dir, shard),
        config=config,
        progress=progress,
        options=storage_options,
        max_read_bytes=max_read_bytes,
    )


def fetch_shards(
    shards: Sequence[Shard],
    data_root: str,
    config: DownloadConfig = DownloadConfig(),
    *,
    parallel: int = 4,
    progress: Callable[[str, int, int | None], None] | None = None,
    **kwargs: Any,
) -> Iterator[RawShard | ShardFailure]:
    """`fetch_shard` for many shards, `parallel` at once; results in the order they finish. A shard
    that cannot be fetched or verified is a ShardFailure and the others go on. Keyword arguments
    are those of `fetch_shard`.
    """
    if parallel < 1:
        raise ValueError(f"parallel downloads must be >= 1, got {parallel}")

    def one(shard: Shard) -> RawShard:
        report = (lambda done, total: progress(shard.key, done, total)) if progress else None
        return fetch_shard(shard, data_root, config, report, **kwargs)

    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="download") as pool:
        futures = {pool.submit(one, shard): shard for shard in shards}
        for future in as_completed(futures):
            shard = futures[future]
            try:
                yield future.result()
            except Exception as exc:  # noqa: BLE001 - this shard's download failed: recorded as a ShardFailure, the others go on
                message = str(exc) if shard.key in str(exc) else f"shard {shard.key}: {exc}"
                yield ShardFailure(shard.key, f"{type(exc).__name__}: {message}")


# --------------------------------------------------------------------------------------------------
# Shards on object storage. Same layout as on disk, under `<data_root>/raw/`; the shard's complete
# marker (an archive's `.verified.json` sidecar, a folder's failed_downloads.json) is uploaded last,
# so its presence in the bucket is the one signal that the shard there is complete and verified.


def _fetch_to_object_store(
    stored: ShardLayout,
    staging: ShardLayout,
    *,
    config: DownloadConfig,
    progress: Progress | None,
    options: dict | None,
    max_read_bytes: int | None,
) -> RawShard:
    """Fetch into `staging` (a local folder laid out like the data root), then upload to `stored`."""
    if stored.shard.kind == "archive":
        done = _verified_remote_archive(stored, staging, options)
        if done is not None:
            return done
        object_store.remove(stored.sidecar, options)  # an overwrite must not look verified midway
        raw = _fetch_local(staging, config, progress, max_read_bytes)
        object_store.upload_file(staging.path, stored.source, options)
        object_store.upload_file(Path(staging.index), stored.index, options)
        object_store.upload_file(Path(staging.sidecar), stored.sidecar, options)
        for leftover in (staging.source, staging.index, staging.sidecar):
            Path(leftover).unlink(missing_ok=True)
    else:
        done = _verified_remote_folder(stored, staging, options)
        if done is not None:
            return done
        object_store.remove(stored.failed_downloads, options)
        raw = _fetch_local(staging, config, progress, max_read_bytes)
        record = Path(staging.failed_downloads)
        files = sorted(p for p in staging.path.iterdir() if p.is_file() and p != record)
        for path in files:
            object_store.upload_file(path, object_store.join(stored.source, path.name), options)
        object_store.upload_file(record, stored.failed_downloads, options)
        if not raw.failed:  # keep a partial folder: the verified videos are not fetched again on retry
            shutil.rmtree(staging.path, ignore_errors=True)
    raw.location = stored.source
    return raw


def _verified_remote_archive(stored: ShardLayout, staging: ShardLayout, options: dict | None) -> RawShard | None:
    """The shard as already stored, when its sidecar names the stored size and its index is there."""
    verified = VerifiedFile.from_json(object_store.read_json(stored.sidecar, options))
    if verified is None or verified.bytes != object_store.size(stored.source, options):
        return None
    index = object_store.read_json(stored.index, options)
    if not isinstance(index, dict):
        return None
    result = DownloadResult.already_verified(verified, url=stored.shard.url, path=staging.path)
    return RawShard(stored.shard.key, staging.path, [result], ArchiveIndex(**index), location=stored.source)


def _verified_remote_folder(stored: ShardLayout, staging: ShardLayout, options: dict | None) -> RawShard | None:
    """A video-list shard as already stored, when it is complete (no failed downloads to retry)."""
    failed = object_store.read_json(stored.failed_downloads, options)
    if failed != []:
        return None
    results = []
    for url in stored.shard.urls:
        verified = VerifiedFile.from_json(object_store.read_json(stored.video_sidecar(url), options))
        if verified is None or verified.bytes != object_store.size(stored.video(url), options):
            return None
        results.append(DownloadResult.already_verified(verified, url=url, path=Path(staging.video(url))))
    names = sorted(url_file_name(u) for u in stored.shard.urls)
    total = sum(r.bytes for r in results)
    index = ArchiveIndex(members=names, video_members=names, junk=[], unsafe=[], total_bytes=total)
    return RawShard(stored.shard.key, staging.path, results, index, location=stored.source)


@contextmanager
def local_source(
    shard: Shard,
    data_root: str,
    *,
    storage_options: dict[str, str] | None = None,
    cache_dir: str | Path | None = None,
) -> Iterator[Path]:
    """The shard's verified source as a local path for the duration of the block: the file itself
    on a local data root, or a copy (with its sidecars) fetched from object storage into `cache_dir`
    and removed afterwards.
    """
    stored = ShardLayout.under(data_root, shard)
    if not stored.is_remote:
        yield stored.path
        return
    if not object_store.exists(stored.complete_marker, storage_options):
        raise UpstreamMissing(
            f"shard {shard.key}: no verified download at {stored.source}; materialize raw_archives for this "
            "partition first (or select '*transcoded_videos' to include everything upstream)"
        )
    if cache_dir is None:
        raise ValueError(f"shard {shard.key}: data root {data_root} is on object storage; a local cache_dir is needed")
    staged = ShardLayout.staged(cache_dir, shard, uuid.uuid4().hex[:8])
    try:
        if shard.kind == "archive":
            # The sidecar first: if the archive were replaced meanwhile, the sizes would disagree.
            object_store.download_file(stored.sidecar, Path(staged.sidecar), storage_options)
            object_store.download_file(stored.source, staged.path, storage_options)
            verified = read_verified(staged.path)
            if verified is None or verified.bytes != staged.path.stat().st_size:
                raise UpstreamMissing(f"shard {shard.key}: {stored.source} changed while being fetched; run again")
        else:
            object_store.download_tree(stored.source, staged.path, storage_options)
        yield staged.path
    finally:
        shutil.rmtree(staged.staged_folder, ignore_errors=True)


def fetch_annotations(url: str, data_root: str | Path, release: str, config: DownloadConfig = DownloadConfig()) -> Path:
    """The release's annotations CSV, fetched once and cached in a local folder (the data root, or
    the cache when the data root is on object storage).
    """
    if object_store.is_remote(str(data_root)):
        raise ValueError(f"annotations of {release}: {data_root} is not a local folder; pass the local cache")
    dest = annotations_path(data_root, release, url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    download(url, dest, config=config, label=f"annotations of {release}")
    return dest
