"""Maintenance: removing old table versions and the files only they use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

from kinetics_assets.table.dataset import open_table

if TYPE_CHECKING:
    from lance.dataset import Version


@dataclass(frozen=True)
class CleanupResult:
    versions_removed: int
    bytes_removed: int
    data_files_removed: int
    tags_removed: list[str]
    versions_left: list[int]


def cleanup_old_versions(
    uri: str,
    storage_options: dict[str, str] | None = None,
    older_than: timedelta = timedelta(days=7),
    *,
    keep_tagged: bool = True,
    delete_unverified: bool = False,
) -> CleanupResult:
    """Delete table versions older than `older_than`, and the files only they use.

    Every commit (a shard replaced, depth written, a retry) makes a new version and leaves the files
    it replaced in place, so readers of an older version keep working and `lance.dataset(uri,
    version=n)` can go back in time. Disk use therefore grows with every re-run until this runs.

    Kept: the latest version always; every version newer than the cutoff; tagged versions
    (`ds.tags.create(name, version)`) unless `keep_tagged` is False, in which case the tags on
    versions older than the cutoff are deleted first and those versions go too. A version a reader
    still uses (an open dataset, a DataLoader pinned to `version=n`, a long training job) breaks
    mid-read when its files are removed: pick `older_than` longer than the longest such read, or
    tag the version it uses.

    Files written by a run that died before its commit (a killed step leaves its fragments
    unreferenced) are removed once they are 7 days old; `delete_unverified=True` removes them at
    once, which is only safe while no other run writes to the table.
    """
    ds = open_table(uri, storage_options)
    cutoff = datetime.now(UTC) - older_than
    tags_removed: list[str] = []
    if not keep_tagged:
        created = {v["version"]: _version_time(v) for v in ds.versions()}
        for name, tag in sorted(ds.tags.list().items()):
            version = tag["version"]
            if version != ds.version and version in created and created[version] < cutoff:
                ds.tags.delete(name)
                tags_removed.append(name)
    stats = ds.cleanup_old_versions(
        older_than=older_than, delete_unverified=delete_unverified, error_if_tagged_old_versions=False
    )
    left = [v["version"] for v in open_table(uri, storage_options).versions()]
    return CleanupResult(stats.old_versions, stats.bytes_removed, stats.data_files_removed, tags_removed, left)


def versions_to_clean_up(
    uri: str,
    storage_options: dict[str, str] | None = None,
    older_than: timedelta = timedelta(days=7),
    *,
    keep_tagged: bool = True,
) -> list[int]:
    """The versions `cleanup_old_versions` with the same arguments would remove (to show first)."""
    ds = open_table(uri, storage_options)
    cutoff = datetime.now(UTC) - older_than
    tagged = {tag["version"] for tag in ds.tags.list().values()} if keep_tagged else set()
    return [
        v["version"]
        for v in ds.versions()
        if v["version"] != ds.version and v["version"] not in tagged and _version_time(v) < cutoff
    ]


def _version_time(version: Version) -> datetime:
    # Lance reports version times as naive UTC datetimes; its Version type says `int | datetime` because
    # versions() turns the raw nanoseconds into a datetime in place.
    moment = cast("datetime", version["timestamp"])
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
