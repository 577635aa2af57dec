"""The `raw_archives` step for one shard: fetch, verify, index (no Dagster here)."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import aiohttp

from kinetics_assets.ingest import object_store
from kinetics_assets.ingest.annotations import parse_member_name
from kinetics_assets.ingest.archive import ArchiveIndex, verify_archive
from kinetics_assets.ingest.download import SIDECAR_SUFFIX, DownloadConfig, DownloadResult, download, download_async, sidecar_path
from kinetics_assets.limits import DEFAULT_LIMITS
from kinetics_assets.steps.checks import ARCHIVE_VERIFIED, HAS_VIDEO_MEMBERS, MEMBER_NAMES_PARSE, Verdict, Verdicts
from kinetics_assets.ingest.shards import Shard


class UpstreamMissing(RuntimeError):
    """The step's input has not been materialized for this partition."""


@dataclass(frozen=True)
class ShardFailure:
    """One shard of a many-shard step that failed as a whole; nothing of it was committed, and the
    other shards went on. `error` names the shard and the cause."""

    shard: str
    error: str


@dataclass
class RawShard:
    shard: str
    path: Path
    """The verified archive, or the folder of downloaded videos (a staging copy, gone after the
    upload, when the data root is on object storage)."""
    downloads: list[DownloadResult]
    index: ArchiveIndex
    failed: list[dict] = field(default_factory=list)
    """Videos of a video-list shard that could not be fetched: {"name", "url", "error"}."""
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
            ARCHIVE_VERIFIED.name: Verdict(True, {"sha256": sha256}),
            HAS_VIDEO_MEMBERS.name: Verdict(videos > 0, {"video_members": videos}),
            MEMBER_NAMES_PARSE.name: Verdict(not unparsable, {"unparsable": unparsable[:100], "count": len(unparsable)}),
        }


def source_path(data_root: str, shard: Shard) -> Path:
    base = Path(data_root) / "raw"
    return base / (f"{shard.key}.tar.gz" if shard.kind == "archive" else shard.key)


def source_uri(data_root: str, shard: Shard) -> str:
    """Like `source_path`, for any data root: a local path, or the URI on object storage."""
    if not object_store.is_remote(data_root):
        return str(source_path(data_root, shard))
    return object_store.join(data_root, "raw", f"{shard.key}.tar.gz" if shard.kind == "archive" else shard.key)


INDEX_SUFFIX = ".index.json"


def _index_path(archive: Path) -> Path:
    return archive.with_name(archive.name + INDEX_SUFFIX)


def _archive_sidecar(shard: Shard, data_root: str, suffix: str, storage_options: dict[str, str] | None) -> dict | None:
    """A JSON file stored beside a shard's archive (`.verified.json`, `.index.json`), local or on
    object storage, without fetching the archive; None for video-list shards or when absent."""
    if shard.kind != "archive":
        return None
    uri = source_uri(data_root, shard) + suffix
    if object_store.is_remote(data_root):
        found = object_store.read_json(uri, storage_options)
    else:
        found = json.loads(Path(uri).read_text()) if Path(uri).is_file() else None
    return found if isinstance(found, dict) else None


def verified_sha256(shard: Shard, data_root: str, storage_options: dict[str, str] | None = None) -> str | None:
    """The sha256 of a shard's verified archive (None for video-list shards and unverified ones)."""
    meta = _archive_sidecar(shard, data_root, SIDECAR_SUFFIX, storage_options)
    return meta.get("sha256") if meta else None


def verified_video_count(shard: Shard, data_root: str, storage_options: dict[str, str] | None = None) -> int | None:
    """How many video members a verified archive holds, from its index (None when unknown)."""
    index = _archive_sidecar(shard, data_root, INDEX_SUFFIX, storage_options)
    return len(index.get("video_members", [])) if index else None


def fetch_archive(
    shard: Shard, dest: Path, config: DownloadConfig, progress=None,
    max_read_bytes: int | None = DEFAULT_LIMITS.max_shard_read_bytes,
) -> RawShard:  # fmt: skip
    """`max_read_bytes` bounds the uncompressed bytes the verification reads (a gzip bomb fails the
    download and leaves nothing behind)."""
    found: list[ArchiveIndex] = []

    def verify(part: Path) -> None:
        found.append(verify_archive(part, label=shard.key, max_total_bytes=max_read_bytes))

    result = download(shard.url, dest, config=config, verify=verify, label=shard.key, progress=progress)
    index_file = _index_path(dest)
    if found:
        index = found[-1]
        index_file.write_text(json.dumps(asdict(index)))
    elif index_file.exists():
        index = ArchiveIndex(**json.loads(index_file.read_text()))
    else:
        index = verify_archive(dest, label=shard.key, max_total_bytes=max_read_bytes)
        index_file.write_text(json.dumps(asdict(index)))
    return RawShard(shard.key, dest, [result], index)


def _video_name(url: str) -> str:
    path = urlparse(url).path if "://" in url else url
    return PurePosixPath(unquote(path)).name


FAILED_DOWNLOADS = "failed_downloads.json"


async def _fetch_videos(shard: Shard, folder: Path, config: DownloadConfig, parallel: int) -> list:
    names = [_video_name(u) for u in shard.urls]
    clashes = {n for n in names if names.count(n) > 1}
    if clashes:
        raise ValueError(f"shard {shard.key}: several videos share the file name(s) {sorted(clashes)[:5]}")
    limit = asyncio.Semaphore(parallel)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(url: str, name: str) -> DownloadResult:
            async with limit:
                return await download_async(session, url, folder / name, config=config, label=shard.key)

        return list(await asyncio.gather(*(one(u, n) for u, n in zip(shard.urls, names)), return_exceptions=True))


def fetch_videos(shard: Shard, folder: Path, config: DownloadConfig, parallel: int = 8) -> RawShard:
    """Download every video of a video-list shard into one folder, a bounded number at once.

    A video that cannot be fetched is recorded (here and in the folder, for transcoded_videos to turn
    into a failed row) and the others go on.
    """
    folder.mkdir(parents=True, exist_ok=True)
    outcomes = asyncio.run(_fetch_videos(shard, folder, config, parallel))
    results = [o for o in outcomes if isinstance(o, DownloadResult)]
    failed = [
        {"name": _video_name(url), "url": url, "error": f"{type(o).__name__}: {o}"}
        for url, o in zip(shard.urls, outcomes)
        if isinstance(o, BaseException)
    ]
    if any(not isinstance(o, Exception) for o in outcomes if isinstance(o, BaseException)):
        raise next(o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, Exception))
    (folder / FAILED_DOWNLOADS).write_text(json.dumps(failed, indent=1))
    names = sorted(r.path.name for r in results)
    index = ArchiveIndex(
        members=names, video_members=names, junk=[], unsafe=[], total_bytes=sum(r.bytes for r in results)
    )
    return RawShard(shard.key, folder, results, index, failed)


def fetch_shard(
    shard: Shard,
    data_root: str,
    config: DownloadConfig = DownloadConfig(),
    progress: Callable | None = None,
    *,
    storage_options: dict[str, str] | None = None,
    cache_dir: str | Path | None = None,
    max_read_bytes: int | None = DEFAULT_LIMITS.max_shard_read_bytes,
) -> RawShard:
    """Download and verify a shard under `data_root`. When that is object storage, the download is
    staged in `cache_dir` (where an interrupted one resumes), verified there, uploaded, and the
    staging copy removed; a shard already verified in the bucket is not fetched again."""
    if object_store.is_remote(data_root):
        if cache_dir is None:
            raise ValueError(f"shard {shard.key}: data root {data_root} is on object storage; a cache_dir is needed")
        return _fetch_to_object_store(
            shard, data_root, config, progress, storage_options, Path(cache_dir), max_read_bytes
        )
    dest = source_path(data_root, shard)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if shard.kind == "archive":
        return fetch_archive(shard, dest, config, progress, max_read_bytes)
    return fetch_videos(shard, dest, config)


def fetch_shards(
    shards: Sequence[Shard],
    data_root: str,
    config: DownloadConfig = DownloadConfig(),
    *,
    parallel: int = 4,
    progress: Callable[[str, int, int | None], None] | None = None,
    **kwargs,
) -> Iterator[RawShard | ShardFailure]:
    """`fetch_shard` for many shards, `parallel` at once; results in the order they finish. A shard
    that cannot be fetched or verified is a ShardFailure and the others go on. Keyword arguments
    are those of `fetch_shard`."""
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
            except Exception as exc:  # this shard's download failed; the others go on
                message = str(exc) if shard.key in str(exc) else f"shard {shard.key}: {exc}"
                yield ShardFailure(shard.key, f"{type(exc).__name__}: {message}")


# --------------------------------------------------------------------------------------------------
# Shards on object storage. Same layout as on disk, under `<data_root>/raw/`; the archive's
# `.verified.json` sidecar (or a folder's failed_downloads.json) is uploaded last, so its presence
# in the bucket is the one signal that the shard there is complete and verified.


def _fetch_to_object_store(
    shard: Shard, data_root: str, config: DownloadConfig, progress, options: dict | None, cache_dir: Path,
    max_read_bytes: int | None,
) -> RawShard:  # fmt: skip
    uri = source_uri(data_root, shard)
    staging = cache_dir / "raw" / (f"{shard.key}.tar.gz" if shard.kind == "archive" else shard.key)
    staging.parent.mkdir(parents=True, exist_ok=True)
    if shard.kind == "archive":
        done = _verified_remote_archive(shard, uri, staging, options)
        if done is not None:
            return done
        object_store.remove(uri + ".verified.json", options)  # an overwrite must not look verified midway
        raw = fetch_archive(shard, staging, config, progress, max_read_bytes)
        object_store.upload_file(staging, uri, options)
        object_store.upload_file(_index_path(staging), uri + INDEX_SUFFIX, options)
        object_store.upload_file(sidecar_path(staging), uri + ".verified.json", options)
        for leftover in (staging, _index_path(staging), sidecar_path(staging)):
            leftover.unlink(missing_ok=True)
    else:
        done = _verified_remote_folder(shard, uri, staging, options)
        if done is not None:
            return done
        object_store.remove(object_store.join(uri, FAILED_DOWNLOADS), options)
        raw = fetch_videos(shard, staging, config)
        files = sorted(p for p in staging.iterdir() if p.is_file() and p.name != FAILED_DOWNLOADS)
        for path in files:
            object_store.upload_file(path, object_store.join(uri, path.name), options)
        object_store.upload_file(staging / FAILED_DOWNLOADS, object_store.join(uri, FAILED_DOWNLOADS), options)
        if not raw.failed:  # keep a partial folder: the verified videos are not fetched again on retry
            shutil.rmtree(staging, ignore_errors=True)
    raw.location = uri
    return raw


def _verified_remote_archive(shard: Shard, uri: str, staging: Path, options: dict | None) -> RawShard | None:
    """The shard as already stored, when its sidecar names the stored size and its index is there."""
    meta = object_store.read_json(uri + ".verified.json", options)
    if not isinstance(meta, dict) or not meta.get("sha256") or meta.get("bytes") != object_store.size(uri, options):
        return None
    index = object_store.read_json(uri + INDEX_SUFFIX, options)
    if not isinstance(index, dict):
        return None
    result = DownloadResult(
        url=shard.url, path=staging, bytes=meta["bytes"], sha256=meta["sha256"], seconds=0.0, mb_per_s=0.0,
        attempts=0, resumed_bytes=0, skipped=True,
    )  # fmt: skip
    return RawShard(shard.key, staging, [result], ArchiveIndex(**index), location=uri)


def _verified_remote_folder(shard: Shard, uri: str, staging: Path, options: dict | None) -> RawShard | None:
    """A video-list shard as already stored, when it is complete (no failed downloads to retry)."""
    failed = object_store.read_json(object_store.join(uri, FAILED_DOWNLOADS), options)
    if failed != []:
        return None
    results = []
    for url in shard.urls:
        name = _video_name(url)
        meta = object_store.read_json(object_store.join(uri, name + ".verified.json"), options)
        if not isinstance(meta, dict) or meta.get("bytes") != object_store.size(object_store.join(uri, name), options):
            return None
        results.append(DownloadResult(
            url=url, path=staging / name, bytes=meta["bytes"], sha256=meta["sha256"], seconds=0.0, mb_per_s=0.0,
            attempts=0, resumed_bytes=0, skipped=True,
        ))  # fmt: skip
    names = sorted(_video_name(u) for u in shard.urls)
    total = sum(r.bytes for r in results)
    index = ArchiveIndex(members=names, video_members=names, junk=[], unsafe=[], total_bytes=total)
    return RawShard(shard.key, staging, results, index, location=uri)


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
    and removed afterwards."""
    if not object_store.is_remote(data_root):
        yield source_path(data_root, shard)
        return
    uri = source_uri(data_root, shard)
    marker = uri + ".verified.json" if shard.kind == "archive" else object_store.join(uri, FAILED_DOWNLOADS)
    if not object_store.exists(marker, storage_options):
        raise UpstreamMissing(
            f"shard {shard.key}: no verified download at {uri}; materialize raw_archives for this "
            "partition first (or select '*transcoded_videos' to include everything upstream)"
        )
    if cache_dir is None:
        raise ValueError(f"shard {shard.key}: data root {data_root} is on object storage; a local cache_dir is needed")
    folder = Path(cache_dir) / "staged" / f"{shard.key}-{uuid.uuid4().hex[:8]}"
    try:
        if shard.kind == "archive":
            local = folder / f"{shard.key}.tar.gz"
            # The sidecar first: if the archive were replaced meanwhile, the sizes would disagree.
            object_store.download_file(uri + ".verified.json", sidecar_path(local), storage_options)
            object_store.download_file(uri, local, storage_options)
            meta = json.loads(sidecar_path(local).read_text())
            if meta.get("bytes") != local.stat().st_size:
                raise UpstreamMissing(f"shard {shard.key}: {uri} changed while being fetched; run again")
        else:
            local = folder / shard.key
            object_store.download_tree(uri, local, storage_options)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fetch_annotations(url: str, data_root: str | Path, release: str, config: DownloadConfig = DownloadConfig()) -> Path:
    """The release's annotations CSV, fetched once and cached in a local folder (the data root, or
    the cache when the data root is on object storage)."""
    if object_store.is_remote(str(data_root)):
        raise ValueError(f"annotations of {release}: {data_root} is not a local folder; pass the local cache")
    dest = Path(data_root) / "annotations" / release / _video_name(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    download(url, dest, config=config, label=f"annotations of {release}")
    return dest
