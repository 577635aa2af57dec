"""Where every file of a shard lives: the one place its paths and URIs are computed.

A shard's source (its archive, or the folder of a video-list shard's videos) sits under a root at
`<root>/raw/<key>.tar.gz` or `<root>/raw/<key>/`, whether the root is the data root (local or on
object storage) or the local staging folder a download to object storage goes through; beside it
the files that make it trustworthy: the download's `.part` and `.part.json` while it runs, the
`.verified.json` sidecar once verified, and the archive's `.index.json`, or a folder's
`failed_downloads.json`. Users already hold data in this layout, so it does not change.

No dagster or ray imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from kinetics_assets.ingest import object_store

if TYPE_CHECKING:
    from kinetics_assets.ingest.shards import Shard

__all__ = [
    "FAILED_DOWNLOADS",
    "INDEX_SUFFIX",
    "ShardLayout",
    "annotations_path",
    "part_meta_path",
    "part_path",
    "sidecar_path",
    "url_file_name",
]

PART_SUFFIX = ".part"
PART_META_SUFFIX = ".part.json"
SIDECAR_SUFFIX = ".verified.json"
INDEX_SUFFIX = ".index.json"
FAILED_DOWNLOADS = "failed_downloads.json"
"""In a video-list shard's folder: the videos that could not be fetched. Written last, so its
presence says the folder is complete (an empty list: nothing to retry)."""
RAW_FOLDER = "raw"
STAGED_FOLDER = "staged"
ANNOTATIONS_FOLDER = "annotations"


def part_path(dest: Path) -> Path:
    """Where a download of `dest` streams to until it is verified."""
    return Path(str(dest) + PART_SUFFIX)


def part_meta_path(dest: Path) -> Path:
    """The validators (url, ETag, Last-Modified, size) that let a later call resume the `.part`."""
    return Path(str(dest) + PART_META_SUFFIX)


def sidecar_path(dest: Path) -> Path:
    """Written last by a download: its presence says `dest` is complete and verified."""
    return Path(str(dest) + SIDECAR_SUFFIX)


def url_file_name(url: str) -> str:
    """The file name a URL (or a path) is stored under: its last path segment, unquoted."""
    path = urlparse(url).path if "://" in url else url
    return PurePosixPath(unquote(path)).name


def annotations_path(local_root: str | Path, release: str, url: str) -> Path:
    """The cached annotations CSV of a release, in a local folder (the data root, or the cache when
    the data root is on object storage).
    """
    return Path(local_root) / ANNOTATIONS_FOLDER / release / url_file_name(url)


def _join(location: str, *parts: str) -> str:
    if object_store.is_remote(location):
        return object_store.join(location, *parts)
    return str(Path(location, *parts))


@dataclass(frozen=True, kw_only=True)
class ShardLayout:
    """The files of one shard's source at one place: under a data root or a staging folder
    (`under`), or a staged local copy of a shard stored on object storage (`staged`).
    """

    shard: Shard
    source: str
    """The archive, or the folder of a video-list shard's videos: a local path or an object-store URI."""

    @classmethod
    def under(cls, root: str | Path, shard: Shard) -> ShardLayout:
        """`<root>/raw/<key>.tar.gz` (an archive shard) or `<root>/raw/<key>` (a video-list shard)."""
        return cls(shard=shard, source=_join(str(root), RAW_FOLDER, _source_name(shard)))

    @classmethod
    def staged(cls, cache_dir: str | Path, shard: Shard, token: str) -> ShardLayout:
        """A local copy of a stored shard for one reader, in its own folder (`staged_folder`), so
        concurrent readers of one shard never share files.
        """
        folder = Path(cache_dir) / STAGED_FOLDER / f"{shard.key}-{token}"
        return cls(shard=shard, source=str(folder / _source_name(shard)))

    @property
    def is_remote(self) -> bool:
        return object_store.is_remote(self.source)

    @property
    def path(self) -> Path:
        """The source as a local path; a layout on object storage has none."""
        if self.is_remote:
            raise ValueError(f"shard {self.shard.key}: {self.source} is on object storage, not a local path")
        return Path(self.source)

    @property
    def staged_folder(self) -> Path:
        """The folder that holds the source and nothing else of another shard (see `staged`)."""
        return self.path.parent

    @property
    def sidecar(self) -> str:
        """The archive's `.verified.json`."""
        return self.source + SIDECAR_SUFFIX

    @property
    def index(self) -> str:
        """The archive's member index, `.index.json`, written once it is verified."""
        return self.source + INDEX_SUFFIX

    @property
    def failed_downloads(self) -> str:
        """A video-list shard's record of the videos that could not be fetched."""
        return _join(self.source, FAILED_DOWNLOADS)

    @property
    def complete_marker(self) -> str:
        """The file whose presence says the stored shard is complete: the archive's sidecar, or the
        folder's failed-download record. Written last, removed first.
        """
        return self.sidecar if self.shard.kind == "archive" else self.failed_downloads

    def video(self, url: str) -> str:
        """Where a video of a video-list shard is stored, named by its URL."""
        return _join(self.source, url_file_name(url))

    def video_sidecar(self, url: str) -> str:
        return self.video(url) + SIDECAR_SUFFIX


def _source_name(shard: Shard) -> str:
    return f"{shard.key}.tar.gz" if shard.kind == "archive" else shard.key
