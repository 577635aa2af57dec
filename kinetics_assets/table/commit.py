"""Shard commits: a shard's fragments written on a worker, published by the driver in one commit.

Layout rule: every fragment holds rows of exactly one shard. That lets a shard be replaced in one
`Update` commit (remove the shard's old fragments, add its new ones), so readers never see half a
shard or a duplicate, and shards committed at the same time do not touch each other's fragments.
Workers write fragments; only the driver commits. Two runs of one shard racing each other cannot
both land (see "Shard commits" below), and every commit loop is bounded (`retry_commit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lance
import pyarrow as pa
from lance import LanceOperation
from lance.dataset import LANCE_COMMIT_MESSAGE_KEY, Transaction
from lance.fragment import FragmentMetadata, write_fragments

from kinetics_assets.table.dataset import id_predicate, open_table, shard_fragment_ids, table_exists
from kinetics_assets.table.retry import COMMIT_ATTEMPTS, retry_commit
from kinetics_assets.table.schema import VIDEO_SCHEMA, rows_to_table

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from kinetics_assets.table.video_row import VideoRow


def ensure_table(uri: str, storage_options: dict[str, str] | None = None) -> lance.LanceDataset:
    """Open the table, creating it empty (with the primary key declared) on first use, and adding
    (all null, no data written) any column a table made by an older version lacks.
    """
    if table_exists(uri, storage_options):
        return add_missing_columns(uri, storage_options, VIDEO_SCHEMA, "the video columns")
    try:
        empty = pa.Table.from_batches([], VIDEO_SCHEMA)
        return lance.write_dataset(empty, uri, schema=VIDEO_SCHEMA, mode="create", storage_options=storage_options)
    except (OSError, ValueError):
        # Another shard created it first.
        return open_table(uri, storage_options)


def add_missing_columns(
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
    rows: Sequence[VideoRow | Mapping[str, Any]], uri: str, storage_options: dict[str, str] | None = None
) -> list[FragmentMetadata]:
    """Write rows of one shard (`VideoRow`s, or mappings from tools and tests) as new, uncommitted
    fragments (run on a worker).
    """
    return write_fragments(rows_to_table(rows), uri, schema=VIDEO_SCHEMA, storage_options=storage_options or None)


@dataclass(frozen=True)
class CommitResult:
    version: int
    attempts: int
    removed_fragments: int
    new_fragments: int


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
            predicate = id_predicate(replace_ids) if replace_ids else None
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
