"""The Lance table that holds every clip: schema, fragment writes and per-shard commits.

Layout rule: every fragment holds rows of exactly one shard. That lets a shard be replaced in one
`Update` commit (remove the shard's old fragments, add its new ones), so readers never see half a
shard or a duplicate, and shards committed at the same time do not touch each other's fragments.
Workers write fragments; only the driver commits.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import lance
import pyarrow as pa
from lance import LanceOperation
from lance.commit import CommitConflictError
from lance.dataset import LANCE_COMMIT_MESSAGE_KEY, Transaction
from lance.fragment import FragmentMetadata, write_fragments

log = logging.getLogger(__name__)

PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}
SIZE_TYPE = pa.struct([("width", pa.int32()), ("height", pa.int32()), ("frames", pa.int64())])

VIDEO_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False, metadata=PRIMARY_KEY),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("release", pa.string()),
        pa.field("split", pa.string()),
        pa.field("label", pa.string()),
        pa.field("youtube_id", pa.string()),
        pa.field("time_start", pa.int32()),
        pa.field("time_end", pa.int32()),
        pa.field("source_url", pa.string()),
        pa.field("source_member", pa.string()),
        pa.field("source_codec", pa.string()),
        pa.field("source_pix_fmt", pa.string()),
        pa.field("source_width", pa.int32()),
        pa.field("source_height", pa.int32()),
        pa.field("source_sar", pa.string()),
        pa.field("source_rotation", pa.int32()),
        pa.field("source_fps", pa.float64()),
        pa.field("source_duration_s", pa.float64()),
        pa.field("source_frames", pa.int64()),
        pa.field("source_bytes", pa.int64()),
        pa.field("source_has_audio", pa.bool_()),
        # How often consecutive frames changed size, and every size with its frame count.
        pa.field("source_size_changes", pa.int32()),
        pa.field("source_sizes", pa.list_(SIZE_TYPE)),
        pa.field("source_bitrate", pa.int64()),  # whole file, bits/s over the decoded duration
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("fps", pa.float64()),
        pa.field("duration_s", pa.float64()),
        pa.field("frames", pa.int64()),
        pa.field("bytes", pa.int64()),
        pa.field("bitrate", pa.int64()),  # whole mp4, bits/s
        pa.field("video_maxrate", pa.int64()),  # the rate cap the video was encoded under; null: none
        lance.blob_field("video"),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_type", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("cpu_seconds", pa.float64()),
        pa.field("encoder", pa.string()),
        pa.field("pipeline_version", pa.string()),
        pa.field("processed_at", pa.timestamp("us", tz="UTC")),
        # sha256 of what the clip was read from (its shard's archive, or the video file itself), so
        # a re-run can tell a shard committed from the same input with the same settings.
        pa.field("source_sha256", pa.string()),
    ]
)
BLOB_COLUMNS = ("video",)
SCALAR_COLUMNS = [f.name for f in VIDEO_SCHEMA if f.name not in BLOB_COLUMNS]


def rows_to_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows (dicts keyed by column) to a table of the video schema; absent keys become null."""
    columns = {}
    for field in VIDEO_SCHEMA:
        values = [row.get(field.name) for row in rows]
        if field.name == "video":
            columns[field.name] = lance.blob_array([v if v is not None else None for v in values])
        else:
            columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=VIDEO_SCHEMA)


def open_table(uri: str, storage_options: dict[str, str] | None = None, version: int | None = None):
    return lance.dataset(uri, version=version, storage_options=storage_options or None)


def table_exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    try:
        open_table(uri, storage_options)
        return True
    except (ValueError, FileNotFoundError, OSError):
        return False


def ensure_table(uri: str, storage_options: dict[str, str] | None = None) -> lance.LanceDataset:
    """Open the table, creating it empty (with the primary key declared) on first use, and adding
    (all null, no data written) any column a table made by an older version lacks."""
    if table_exists(uri, storage_options):
        return _add_missing_columns(uri, storage_options, VIDEO_SCHEMA)
    try:
        empty = pa.Table.from_batches([], VIDEO_SCHEMA)
        return lance.write_dataset(empty, uri, schema=VIDEO_SCHEMA, mode="create", storage_options=storage_options)
    except (OSError, ValueError):
        # Another shard created it first.
        return open_table(uri, storage_options)


def _add_missing_columns(
    uri: str, storage_options: dict[str, str] | None, schema: pa.Schema, max_attempts: int = 20
) -> lance.LanceDataset:
    for attempt in range(1, max_attempts + 1):
        ds = open_table(uri, storage_options)
        missing = [f for f in schema if f.name not in ds.schema.names]
        if not missing:
            return ds
        try:
            ds.add_columns(missing)
        except (CommitConflictError, OSError) as exc:
            log.info("adding columns %s conflicted (attempt %d): %s", [f.name for f in missing], attempt, exc)
            time.sleep(random.uniform(0.05, 0.5) * attempt)
    raise RuntimeError(f"could not add columns to {uri} after {max_attempts} attempts")


def write_shard_fragments(
    rows: Sequence[dict[str, Any]], uri: str, storage_options: dict[str, str] | None = None
) -> list[FragmentMetadata]:
    """Write rows of one shard as new, uncommitted fragments (run on a worker)."""
    return write_fragments(
        rows_to_table(rows), uri, schema=VIDEO_SCHEMA, storage_options=storage_options or None
    )


def shard_fragment_ids(ds: lance.LanceDataset, shard: str) -> set[int]:
    table = ds.to_table(columns=[], filter=f"shard = {sql_literal(shard)}", with_row_address=True)
    return {addr >> 32 for addr in table["_rowaddr"].to_pylist()}


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _id_predicate(video_ids: Iterable[str]) -> str:
    return "video_id IN (" + ", ".join(sql_literal(v) for v in sorted(video_ids)) + ")"


@dataclass(frozen=True)
class CommitResult:
    version: int
    attempts: int
    removed_fragments: int
    new_fragments: int


def commit_shard(
    uri: str,
    shard: str,
    new_fragments: list[FragmentMetadata],
    *,
    replace_ids: set[str] | None = None,
    storage_options: dict[str, str] | None = None,
    properties: dict[str, str] | None = None,
    max_attempts: int = 20,
) -> CommitResult:
    """Publish a shard's new fragments in one commit.

    With `replace_ids` None the shard's old fragments are all removed (a full re-run). Otherwise only
    the rows with those ids are deleted from the old fragments (a retry of failed clips), so the ok
    rows stay where they are. A conflicting commit is retried from the newest version.
    """
    props = {"shard": shard, **(properties or {})}
    props.setdefault(LANCE_COMMIT_MESSAGE_KEY, f"shard {shard}: +{len(new_fragments)} fragments")
    for attempt in range(1, max_attempts + 1):
        ds = ensure_table(uri, storage_options)
        old_ids = shard_fragment_ids(ds, shard)
        removed: list[int] = []
        updated: list[FragmentMetadata] = []
        if replace_ids is None:
            removed = sorted(old_ids)
        elif replace_ids:
            predicate = _id_predicate(replace_ids)
            for fragment in ds.get_fragments():
                if fragment.fragment_id not in old_ids or fragment.count_rows(predicate) == 0:
                    continue
                remaining = fragment.delete(predicate)
                if remaining is None:
                    removed.append(fragment.fragment_id)
                else:
                    updated.append(remaining)
        op = LanceOperation.Update(
            removed_fragment_ids=removed, updated_fragments=updated, new_fragments=new_fragments
        )
        try:
            committed = lance.LanceDataset.commit(
                uri,
                Transaction(ds.version, op, transaction_properties=props),
                read_version=ds.version,
                storage_options=storage_options or None,
            )
        except CommitConflictError as exc:
            log.info("shard %s: commit conflict (attempt %d), retrying: %s", shard, attempt, exc)
            time.sleep(random.uniform(0.05, 0.5) * attempt)
            continue
        _remove_rebased_rivals(uri, shard, ds.version, committed.version, storage_options)
        return CommitResult(committed.version, attempt, len(removed), len(new_fragments))
    raise RuntimeError(f"shard {shard}: gave up committing to {uri} after {max_attempts} conflicting attempts")


def _remove_rebased_rivals(
    uri: str, shard: str, read_version: int, committed_version: int, storage_options: dict[str, str] | None
) -> None:
    """Undo what a concurrent run of the same shard added while this commit was in flight.

    Lance rebases an Update that removes no fragment over any other Update, so two first runs of one
    shard would both land. The later commit wins: fragments added by same-shard commits between our
    read and our commit are removed (found by their data files, which never change).
    """
    ds = open_table(uri, storage_options)
    rival_files: set[str] = set()
    for version in range(read_version + 1, committed_version):
        txn = ds.read_transaction(version)
        if txn is None or (txn.transaction_properties or {}).get("shard") != shard:
            continue
        for fragment in getattr(txn.operation, "new_fragments", None) or []:
            rival_files.update(f.path for f in fragment.files)
    while rival_files:
        ds = open_table(uri, storage_options)
        stale = [f.fragment_id for f in ds.get_fragments() if any(d.path in rival_files for d in f.metadata.files)]
        if not stale:
            return
        op = LanceOperation.Update(removed_fragment_ids=stale)
        props = {"shard": shard, LANCE_COMMIT_MESSAGE_KEY: f"shard {shard}: drop fragments of a superseded concurrent run"}
        try:
            lance.LanceDataset.commit(uri, Transaction(ds.version, op, transaction_properties=props),
                                      read_version=ds.version, storage_options=storage_options or None)
            log.warning("shard %s: removed %d fragments of a concurrent run it superseded", shard, len(stale))
            return
        except CommitConflictError:
            time.sleep(random.uniform(0.05, 0.3))


def shard_rows(
    ds: lance.LanceDataset, shard: str, columns: Sequence[str] | None = None
) -> pa.Table:
    return ds.to_table(columns=list(columns or SCALAR_COLUMNS), filter=f"shard = {sql_literal(shard)}")


# Depth lives in the same table as a group of columns added once. They are plain (non-blob) columns
# so that a shard's depth can be written with `merge_insert(...).write_mode("rewrite_columns")`,
# which adds one data file per fragment holding only these columns: the video bytes are not rewritten.
DEPTH_FIELDS = [
    pa.field("depth", pa.large_binary()),
    pa.field("depth_status", pa.string()),
    pa.field("depth_error", pa.string()),
    pa.field("depth_lo", pa.float32()),
    pa.field("depth_hi", pa.float32()),
    pa.field("depth_frames", pa.int32()),
    pa.field("depth_width", pa.int32()),
    pa.field("depth_height", pa.int32()),
    pa.field("depth_timestamps", pa.list_(pa.float64())),
    pa.field("depth_sampling", pa.string()),
    pa.field("depth_encoding", pa.string()),
    pa.field("depth_model", pa.string()),
    pa.field("depth_model_revision", pa.string()),
    pa.field("depth_pretrained", pa.bool_()),
    pa.field("depth_processed_at", pa.timestamp("us", tz="UTC")),
]
DEPTH_SCHEMA = pa.schema([pa.field("video_id", pa.string(), nullable=False), *DEPTH_FIELDS])


def ensure_depth_columns(uri: str, storage_options: dict[str, str] | None = None) -> None:
    """Add the depth columns (all null, no data written) if the table does not have them yet."""
    _add_missing_columns(uri, storage_options, pa.schema(DEPTH_FIELDS))


def write_depth(
    uri: str, rows: Sequence[dict[str, Any]], storage_options: dict[str, str] | None = None
) -> int:
    """Set the depth columns of the given videos in one commit; returns the new version."""
    table = pa.Table.from_pylist(list(rows), schema=DEPTH_SCHEMA)
    ds = open_table(uri, storage_options)
    (
        ds.merge_insert("video_id")
        .when_matched_update_all()
        .write_mode("rewrite_columns")
        .execute(table)
    )
    return open_table(uri, storage_options).version


# --------------------------------------------------------------------------------------------------
# Old versions


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
    cutoff = datetime.now(timezone.utc) - older_than
    tags_removed: list[str] = []
    if not keep_tagged:
        created = {v["version"]: _as_utc(v["timestamp"]) for v in ds.versions()}
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
    keep_tagged: bool = True,
) -> list[int]:
    """The versions `cleanup_old_versions` with the same arguments would remove (to show first)."""
    ds = open_table(uri, storage_options)
    cutoff = datetime.now(timezone.utc) - older_than
    tagged = {tag["version"] for tag in ds.tags.list().values()} if keep_tagged else set()
    return [
        v["version"]
        for v in ds.versions()
        if v["version"] != ds.version and v["version"] not in tagged and _as_utc(v["timestamp"]) < cutoff
    ]


def _as_utc(moment: datetime) -> datetime:
    # Lance reports version times as naive UTC.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
