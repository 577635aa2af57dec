"""The Lance table that holds every clip: schema, fragment writes and per-shard commits.

Layout rule: every fragment holds rows of exactly one shard. That lets a shard be replaced in one
`Update` commit (remove the shard's old fragments, add its new ones), so readers never see half a
shard or a duplicate, and shards committed at the same time do not touch each other's fragments.
Workers write fragments; only the driver commits. Two runs of one shard racing each other cannot
both land (see "Shard commits" below), and every commit loop is bounded (`retry_commit`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

import lance
import pyarrow as pa
from lance import LanceOperation
from lance.commit import CommitConflictError
from lance.dataset import LANCE_COMMIT_MESSAGE_KEY, Transaction
from lance.fragment import FragmentMetadata, write_fragments
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from lance.dataset import Version

log = logging.getLogger(__name__)
T = TypeVar("T")

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


def open_table(
    uri: str, storage_options: dict[str, str] | None = None, version: int | None = None
) -> lance.LanceDataset:
    return lance.dataset(uri, version=version, storage_options=storage_options or None)


def table_exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    try:
        open_table(uri, storage_options)
    except (ValueError, FileNotFoundError, OSError):
        return False
    return True


def ensure_table(uri: str, storage_options: dict[str, str] | None = None) -> lance.LanceDataset:
    """Open the table, creating it empty (with the primary key declared) on first use, and adding
    (all null, no data written) any column a table made by an older version lacks.
    """
    if table_exists(uri, storage_options):
        return _add_missing_columns(uri, storage_options, VIDEO_SCHEMA, "the video columns")
    try:
        empty = pa.Table.from_batches([], VIDEO_SCHEMA)
        return lance.write_dataset(empty, uri, schema=VIDEO_SCHEMA, mode="create", storage_options=storage_options)
    except (OSError, ValueError):
        # Another shard created it first.
        return open_table(uri, storage_options)


def _add_missing_columns(
    uri: str, storage_options: dict[str, str] | None, schema: pa.Schema, what: str
) -> lance.LanceDataset:
    """Add (all null, no data written) the columns of `schema` the table lacks; returns it opened."""

    def attempt(_number: int) -> lance.LanceDataset:
        ds = open_table(uri, storage_options)
        missing = [f for f in schema if f.name not in ds.schema.names]
        if missing:
            ds.add_columns(missing)
            ds = open_table(uri, storage_options)
        return ds

    return retry_commit(f"adding {what}", uri, attempt, storage_options)


def write_shard_fragments(
    rows: Sequence[dict[str, Any]], uri: str, storage_options: dict[str, str] | None = None
) -> list[FragmentMetadata]:
    """Write rows of one shard as new, uncommitted fragments (run on a worker)."""
    return write_fragments(rows_to_table(rows), uri, schema=VIDEO_SCHEMA, storage_options=storage_options or None)


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


# --------------------------------------------------------------------------------------------------
# Commit retries: one policy for every commit loop of the table.

COMMIT_ATTEMPTS = 30
"""Attempts of one commit (each re-reads the newest version) before it gives up with CommitContention."""
COMMIT_BACKOFF_S = (0.05, 2.0)
"""Jittered exponential backoff between attempts: first wait up to 0.05 s, never more than 2 s."""


class CommitContention(RuntimeError):  # noqa: N818 - public name, caught by name in the steps and tests
    """A commit still conflicted after its last attempt; names what it was and what kept conflicting."""

    def __init__(self, what: str, uri: str, attempts: int, conflicts: list[str]) -> None:
        self.what, self.uri, self.attempts, self.conflicts = what, uri, attempts, conflicts
        counts: dict[str, int] = {}
        for c in conflicts:
            counts[c] = counts.get(c, 0) + 1
        kept = "; ".join(f"{c} (x{n})" if n > 1 else c for c, n in counts.items()) or "nothing recorded"
        super().__init__(
            f"{what}: gave up committing to {uri} after {attempts} attempts, each preempted by a concurrent "
            f"commit; what kept conflicting: {kept}"
        )


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, CommitConflictError):
        return getattr(exc, "retryable", True)
    # Lance reports an exhausted internal retry or a lost race for the next manifest as an OSError.
    return isinstance(exc, OSError) and any(
        word in str(exc).lower() for word in ("conflict", "concurrent", "contention")
    )


_CONFLICT_VERSION = re.compile(r"transaction (\w+) at version (\d+)")


def _describe_conflict(uri: str, exc: BaseException, storage_options: dict[str, str] | None) -> str:
    """Which commit preempted this one: its shard and step when it recorded them, else its operation."""
    match = _CONFLICT_VERSION.search(str(exc))
    if not match:
        return str(exc).split(",")[0][:200]
    operation, version = match.group(1), int(match.group(2))
    try:
        txn = open_table(uri, storage_options).read_transaction(version)
    except (OSError, ValueError):
        txn = None
    props = (txn.transaction_properties or {}) if txn is not None else {}
    if props.get("shard"):
        step = props.get("step")
        return f"{operation} of shard {props['shard']}" + (f" ({step})" if step else "") + f" at version {version}"
    mode = getattr(txn.operation, "update_mode", "") if txn is not None else ""
    label = "a column rewrite (depth or transcript write)" if "column" in str(mode).lower() else operation
    return f"{label} at version {version}"


def retry_commit(
    what: str,
    uri: str,
    attempt: Callable[[int], T],
    storage_options: dict[str, str] | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> T:
    """Run `attempt(n)` until it commits, under the one retry policy of this table.

    Each attempt must read the newest version itself. A retryable commit conflict waits (jittered,
    exponential, capped) and tries again; after `max_attempts` the commit fails with
    CommitContention, which names `what` (the shard) and the commits that preempted it. Any
    other error is raised at once.
    """
    if max_attempts < 1:
        raise ValueError(f"{what}: max_attempts must be >= 1, got {max_attempts}")
    conflicts: list[str] = []

    def record(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None and _is_conflict(exc):
            conflicts.append(_describe_conflict(uri, exc, storage_options))
            log.info("%s: commit conflict on attempt %d: %s", what, state.attempt_number, conflicts[-1])

    retrying = Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait_random_exponential(multiplier=COMMIT_BACKOFF_S[0], max=COMMIT_BACKOFF_S[1]),
        retry=retry_if_exception(_is_conflict),
        after=record,
        reraise=False,
    )
    try:
        for trial in retrying:
            with trial:
                return attempt(trial.retry_state.attempt_number)
    except RetryError as exc:
        raise CommitContention(what, uri, max_attempts, conflicts) from exc.last_attempt.exception()
    raise AssertionError("unreachable: tenacity either returns an attempt's result or raises")


# --------------------------------------------------------------------------------------------------
# Shard commits: exactly once per shard, by construction.
#
# Lance commits optimistically: a commit made from version R is checked against every commit that
# landed after R and is rejected (a retryable conflict) when one of them modified or removed a
# fragment that this one modifies or removes; otherwise it is rebased and lands. An Update that
# only adds fragments therefore lands over anything, which is how two runs of one shard could both
# land. So every shard commit names a claim that any other commit of the same shard also names:
#
#   - the shard has fragments at R: all of them, removed (full run) or modified (retry: rows
#     deleted, or the fragment re-stated unchanged);
#   - the shard has none: the table's lowest-id fragment, re-stated unchanged (fragment ids only
#     grow, so two readers that both see no shard see the same lowest fragment unless a commit in
#     between removed it, which conflicts with the earlier reader);
#   - the table has no fragments at all: a Merge, which conflicts with every concurrent data commit.
#
# Of two commits of one shard, the later one therefore either read a version that holds the
# earlier one (and replaces it) or is rejected and retried from the newest version. No version
# ever holds a shard twice, a kill at any moment leaves the last committed run, and nothing needs
# cleaning up afterwards. Re-stating a fragment unchanged does not alter its rows.


def commit_shard(
    uri: str,
    shard: str,
    new_fragments: list[FragmentMetadata],
    *,
    replace_ids: set[str] | None = None,
    storage_options: dict[str, str] | None = None,
    properties: dict[str, str] | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> CommitResult:
    """Publish a shard's new fragments in one commit.

    With `replace_ids` None the shard's old fragments are all removed (a full re-run). Otherwise only
    the rows with those ids are deleted from the old fragments (a retry of failed clips), so the ok
    rows stay where they are. A conflicting commit is retried from the newest version, at most
    `max_attempts` times (then CommitContention names the shard and what kept conflicting).
    """
    props = {"shard": shard, **(properties or {})}
    props.setdefault(LANCE_COMMIT_MESSAGE_KEY, f"shard {shard}: +{len(new_fragments)} fragments")
    options = storage_options or None

    def attempt(number: int) -> CommitResult:
        ds = ensure_table(uri, storage_options)
        fragments = {f.fragment_id: f for f in ds.get_fragments()}
        old_ids = shard_fragment_ids(ds, shard)
        removed: list[int] = []
        updated: list[FragmentMetadata] = []
        if replace_ids is None:
            removed = sorted(old_ids)
        else:
            predicate = _id_predicate(replace_ids) if replace_ids else None
            for fragment_id in sorted(old_ids):
                fragment = fragments[fragment_id]
                if predicate is not None and fragment.count_rows(predicate) > 0:
                    remaining = fragment.delete(predicate)
                    if remaining is None:
                        removed.append(fragment_id)
                    else:
                        updated.append(remaining)
                else:
                    updated.append(fragment.metadata)  # the claim: re-stated unchanged
        if not old_ids and fragments:
            updated = [fragments[min(fragments)].metadata]  # the claim: lowest-id fragment, unchanged
        if not old_ids and not fragments:
            committed = _commit_into_empty_table(uri, ds, new_fragments, props, options)
        else:
            op = LanceOperation.Update(
                removed_fragment_ids=removed, updated_fragments=updated, new_fragments=new_fragments
            )
            committed = lance.LanceDataset.commit(
                uri,
                Transaction(ds.version, op, transaction_properties=props),
                read_version=ds.version,
                storage_options=options,
                max_retries=0,
            )
        return CommitResult(committed.version, number, len(removed), len(new_fragments))

    return retry_commit(f"shard {shard}", uri, attempt, storage_options, max_attempts)


def _commit_into_empty_table(
    uri: str, ds: lance.LanceDataset, new_fragments: list[FragmentMetadata], props: dict, options: dict[str, str] | None
) -> lance.LanceDataset:
    """The first fragments of a table, as a Merge: it conflicts with every concurrent data commit.

    Merge takes fragment ids as given, so they are first assigned by a detached commit of the same
    fragments (never part of the table's lineage), which numbers them after every id the table used.
    """
    detached = lance.LanceDataset.commit(
        uri,
        Transaction(ds.version, LanceOperation.Update(new_fragments=new_fragments)),
        read_version=ds.version,
        storage_options=options,
        detached=True,
        max_retries=5,  # draws of a random detached version number, not conflict retries
    )
    numbered = [f.metadata for f in detached.get_fragments()]
    op = LanceOperation.Merge(numbered, ds.lance_schema)
    return lance.LanceDataset.commit(
        uri,
        Transaction(ds.version, op, transaction_properties=props),
        read_version=ds.version,
        storage_options=options,
        max_retries=0,
    )


def shard_rows(ds: lance.LanceDataset, shard: str, columns: Sequence[str] | None = None) -> pa.Table:
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
    _add_missing_columns(uri, storage_options, pa.schema(DEPTH_FIELDS), "the depth columns")


def write_depth(
    uri: str,
    rows: Sequence[dict[str, Any]],
    storage_options: dict[str, str] | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> int:
    """Set the depth columns of the given videos in one commit; returns the version it made."""
    return write_columns(uri, rows, DEPTH_SCHEMA, "depth", storage_options=storage_options, max_attempts=max_attempts)


# Transcripts: a second group of derived columns, added and written exactly like depth.
SEGMENT_TYPE = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())])
TRANSCRIPT_FIELDS = [
    pa.field("transcript_status", pa.string()),  # ok, no_audio, no_speech, failed
    pa.field("transcript_error", pa.string()),
    pa.field("transcript_text", pa.string()),  # "" unless the status is ok
    pa.field("transcript_language", pa.string()),
    pa.field("transcript_language_probability", pa.float32()),  # null when the language was fixed
    pa.field("transcript_segments", pa.list_(SEGMENT_TYPE)),  # seconds in the clip, ordered
    pa.field("transcript_model", pa.string()),
    pa.field("transcript_model_revision", pa.string()),
    pa.field("transcript_pretrained", pa.bool_()),
    pa.field("transcript_processed_at", pa.timestamp("us", tz="UTC")),
]
TRANSCRIPT_SCHEMA = pa.schema([pa.field("video_id", pa.string(), nullable=False), *TRANSCRIPT_FIELDS])


def ensure_transcript_columns(uri: str, storage_options: dict[str, str] | None = None) -> None:
    """Add the transcript columns (all null, no data written) if the table does not have them yet."""
    _add_missing_columns(uri, storage_options, pa.schema(TRANSCRIPT_FIELDS), "the transcript columns")


def write_transcripts(
    uri: str,
    rows: Sequence[dict[str, Any]],
    storage_options: dict[str, str] | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> int:
    """Set the transcript columns of the given videos in one commit; returns the version it made."""
    return write_columns(
        uri, rows, TRANSCRIPT_SCHEMA, "transcripts", storage_options=storage_options, max_attempts=max_attempts
    )


def write_columns(
    uri: str,
    rows: Sequence[dict[str, Any]],
    schema: pa.Schema,
    what: str,
    *,
    storage_options: dict[str, str] | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> int:
    """Set one group of derived columns (`schema`: video_id and the group) of the given videos in one
    commit; returns the version that commit made (not the newest, which may already be another's).

    Only matched rows are updated (no insert), so this never adds a row; it rewrites only these
    columns of the fragments that hold those videos, never the video bytes. It conflicts with a
    concurrent commit of the same shard and is then retried from the newest version under the commit
    policy.
    """
    table = pa.Table.from_pylist(list(rows), schema=schema)

    def attempt(_number: int) -> int:
        ds = open_table(uri, storage_options)
        (
            ds.merge_insert("video_id")
            .when_matched_update_all()
            .write_mode("rewrite_columns")
            .conflict_retries(0)
            .execute(table)
        )
        # Lance moves `ds` to the version its commit made. Reopening the table instead would give the
        # newest version, which may be another writer's commit that landed just after this one.
        return ds.version

    return retry_commit(_columns_label(uri, rows, what, storage_options), uri, attempt, storage_options, max_attempts)


def _columns_label(uri: str, rows: Sequence[dict[str, Any]], what: str, storage_options: dict[str, str] | None) -> str:
    if not rows:
        return f"{what} of no videos"
    first = rows[0]["video_id"]
    try:
        found = (
            open_table(uri, storage_options)
            .to_table(columns=["shard"], filter=f"video_id = {sql_literal(first)}", limit=1)["shard"]
            .to_pylist()
        )
    except (OSError, ValueError):
        found = []
    where = f"shard {found[0]}" if found else f"video {first}"
    return f"{what} of {where} ({len(rows)} videos)"


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
