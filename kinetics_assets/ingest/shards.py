"""Which shards exist: bundled Kinetics manifests and user manifests, mapped to partition keys.

A shard is the unit of work and the Dagster partition. Official shards are one archive each; a
custom manifest either lists archives (one shard each) or lists loose videos (together one shard).
Partition keys are made safe for Dagster and map back to the exact URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, unquote, urlparse

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kinetics_assets.settings import Settings

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


ShardKind = Literal["archive", "videos"]
"""`archive`: one .tar.gz; `videos`: a list of loose video URLs, stored together in one folder."""


class ManifestError(ValueError):
    """A manifest line or a partition key the platform cannot use."""


@dataclass(frozen=True)
class Shard:
    key: str
    """Partition key: lowercase letters, digits, `_` and `-` only."""
    kind: ShardKind
    urls: tuple[str, ...]
    release: str
    name: str
    """The shard's own name, e.g. a K600 class name with spaces, before it was made a key."""

    @property
    def url(self) -> str:
        return self.urls[0]


def partition_key(name: str) -> str:
    """A stable Dagster-safe key for a shard name (`abseiling (rope)` -> `abseiling_rope`)."""
    key = re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_")
    if not key:
        raise ManifestError(f"shard name {name!r} leaves no usable partition key")
    return key


def _strip_suffix(name: str, suffixes: tuple[str, ...]) -> str:
    lowered = name.lower()
    for suffix in suffixes:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _add(shards: dict[str, Shard], shard: Shard) -> None:
    if shard.key in shards:
        other = shards[shard.key]
        raise ManifestError(
            f"shards {other.name!r} ({other.url}) and {shard.name!r} ({shard.url}) "
            f"both map to partition key {shard.key!r}"
        )
    shards[shard.key] = shard


def bundled_manifest_lines(release: str) -> list[str]:
    text = resources.files("kinetics_assets.ingest").joinpath("manifests", f"{release}_val.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def official_shards(release: str, base_url: str) -> dict[str, Shard]:
    """Shards of a Kinetics validation split, from the bundled path list."""
    shards: dict[str, Shard] = {}
    for path in bundled_manifest_lines(release):
        name = _strip_suffix(unquote(path.rsplit("/", 1)[-1]), ARCHIVE_SUFFIXES)
        # K600 names carry spaces and parentheses; the URL must be percent-encoded.
        url = base_url + quote(path, safe="/")
        _add(shards, Shard(partition_key(name), "archive", (url,), release, name))
    return shards


def _resolve(entry: str, manifest: Path, lineno: int) -> str:
    scheme = urlparse(entry).scheme
    if scheme in ("http", "https", "file", "s3", "gs", "az"):
        return entry
    if "://" in entry:
        raise ManifestError(f"{manifest}, line {lineno}: unsupported URL scheme in {entry!r}")
    path = Path(entry).expanduser()
    if not path.is_absolute():
        path = (manifest.parent / path).resolve()
    return str(path)


def _manifest_entries(manifest: Path) -> list[tuple[int, str]]:
    """(line number, resolved url) of each entry; blank lines and comments skipped, duplicates refused."""
    entries: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(manifest.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        url = _resolve(line, manifest, lineno)
        if url in seen:
            raise ManifestError(f"{manifest}, line {lineno}: duplicate entry {line!r} (first on line {seen[url]})")
        seen[url] = lineno
        entries.append((lineno, url))
    if not entries:
        raise ManifestError(f"{manifest}: lists no archives or videos")
    return entries


def _entry_kind(manifest: Path, lineno: int, url: str) -> ShardKind:
    name = urlparse(url).path.lower() if "://" in url else url.lower()
    if name.endswith(ARCHIVE_SUFFIXES):
        return "archive"
    if name.endswith(VIDEO_SUFFIXES):
        return "videos"
    raise ManifestError(
        f"{manifest}, line {lineno}: {url!r} is neither an archive ({', '.join(ARCHIVE_SUFFIXES)}) "
        f"nor a video ({', '.join(VIDEO_SUFFIXES)})"
    )


def custom_shards(manifest: Path) -> dict[str, Shard]:
    """Shards from a user manifest: archive URLs (a shard each) or video URLs (one shard)."""
    entries = _manifest_entries(manifest)
    kinds = {_entry_kind(manifest, lineno, url) for lineno, url in entries}
    if len(kinds) > 1:
        raise ManifestError(f"{manifest}: mixes archives and loose videos; use one manifest for each")
    shards: dict[str, Shard] = {}
    if kinds == {"videos"}:
        name = manifest.stem
        _add(shards, Shard(partition_key(name), "videos", tuple(url for _, url in entries), "custom", name))
        return shards
    for _, url in entries:
        file_name = unquote(urlparse(url).path if "://" in url else url).rsplit("/", 1)[-1]
        name = _strip_suffix(file_name, ARCHIVE_SUFFIXES)
        _add(shards, Shard(partition_key(name), "archive", (url,), "custom", name))
    return shards


def load_shards(settings: Settings) -> dict[str, Shard]:
    if settings.manifest is not None:
        return custom_shards(settings.manifest)
    return official_shards(settings.release, settings.base_url)


def get_shard(shards: Mapping[str, Shard], key: str) -> Shard:
    try:
        return shards[key]
    except KeyError:
        sample = ", ".join(list(shards)[:5])
        raise ManifestError(f"unknown shard {key!r}; known shards include: {sample}") from None
