"""The `raw_archives` step for one shard: fetch, verify, index (no Dagster here)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import aiohttp

from kinetics_assets.annotations import parse_member_name
from kinetics_assets.archive import ArchiveIndex, verify_archive
from kinetics_assets.download import DownloadConfig, DownloadResult, download, download_async
from kinetics_assets.shards import Shard


@dataclass
class RawShard:
    shard: str
    path: Path
    """The verified archive, or the folder of downloaded videos."""
    downloads: list[DownloadResult]
    index: ArchiveIndex
    failed: list[dict] = field(default_factory=list)
    """Videos of a video-list shard that could not be fetched: {"name", "url", "error"}."""

    @property
    def unparsable(self) -> list[str]:
        return [m for m in self.index.video_members if parse_member_name(m) is None]


def source_path(data_root: str, shard: Shard) -> Path:
    base = Path(data_root) / "raw"
    return base / (f"{shard.key}.tar.gz" if shard.kind == "archive" else shard.key)


def _index_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".index.json")


def fetch_archive(shard: Shard, dest: Path, config: DownloadConfig, progress=None) -> RawShard:
    found: list[ArchiveIndex] = []

    def verify(part: Path) -> None:
        found.append(verify_archive(part, label=shard.key))

    result = download(shard.url, dest, config=config, verify=verify, label=shard.key, progress=progress)
    index_file = _index_path(dest)
    if found:
        index = found[-1]
        index_file.write_text(json.dumps(asdict(index)))
    elif index_file.exists():
        index = ArchiveIndex(**json.loads(index_file.read_text()))
    else:
        index = verify_archive(dest, label=shard.key)
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
    shard: Shard, data_root: str, config: DownloadConfig = DownloadConfig(), progress: Callable | None = None
) -> RawShard:
    dest = source_path(data_root, shard)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if shard.kind == "archive":
        return fetch_archive(shard, dest, config, progress)
    return fetch_videos(shard, dest, config)


def fetch_annotations(url: str, data_root: str, release: str, config: DownloadConfig = DownloadConfig()) -> Path:
    """The release's annotations CSV, fetched once and cached beside the archives."""
    dest = Path(data_root) / "annotations" / release / _video_name(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    download(url, dest, config=config, label=f"annotations of {release}")
    return dest
