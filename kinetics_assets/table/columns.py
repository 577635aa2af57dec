"""Column writes: the depth and transcript column groups, added once and set per shard in one commit.

They are plain (non-blob) columns so that a shard's group can be written with
`merge_insert(...).write_mode("rewrite_columns")`, which adds one data file per fragment holding
only these columns: the video bytes are not rewritten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kinetics_assets.table.commit import add_missing_columns
from kinetics_assets.table.dataset import open_table, sql_literal
from kinetics_assets.table.retry import COMMIT_ATTEMPTS, retry_commit
from kinetics_assets.table.schema import DEPTH_FIELDS, DEPTH_SCHEMA, TRANSCRIPT_FIELDS, TRANSCRIPT_SCHEMA

if TYPE_CHECKING:
    from collections.abc import Sequence


def ensure_depth_columns(uri: str, storage_options: dict[str, str] | None = None) -> None:
    """Add the depth columns (all null, no data written) if the table does not have them yet."""
    add_missing_columns(uri, storage_options, pa.schema(DEPTH_FIELDS), "the depth columns")


def write_depth(
    uri: str,
    rows: Sequence[dict[str, Any]],
    storage_options: dict[str, str] | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> int:
    """Set the depth columns of the given videos in one commit; returns the version it made."""
    table = pa.Table.from_pylist(list(rows), schema=DEPTH_SCHEMA)
    return write_columns(uri, table, "depth", storage_options=storage_options, max_attempts=max_attempts)


def ensure_transcript_columns(uri: str, storage_options: dict[str, str] | None = None) -> None:
    """Add the transcript columns (all null, no data written) if the table does not have them yet."""
    add_missing_columns(uri, storage_options, pa.schema(TRANSCRIPT_FIELDS), "the transcript columns")


def write_transcripts(
    uri: str,
    rows: Sequence[dict[str, Any]],
    storage_options: dict[str, str] | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> int:
    """Set the transcript columns of the given videos in one commit; returns the version it made."""
    table = pa.Table.from_pylist(list(rows), schema=TRANSCRIPT_SCHEMA)
    return write_columns(uri, table, "transcripts", storage_options=storage_options, max_attempts=max_attempts)


def write_columns(
    uri: str,
    table: pa.Table,
    what: str,
    *,
    storage_options: dict[str, str] | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> int:
    """Set one group of derived columns (`table`: video_id and the group) of the given videos in one
    commit; returns the version that commit made (not the newest, which may already be another's).

    Only matched rows are updated (no insert), so this never adds a row; it rewrites only these
    columns of the fragments that hold those videos, never the video bytes. It conflicts with a
    concurrent commit of the same shard and is then retried from the newest version under the commit
    policy.
    """

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

    label = _columns_label(uri, table["video_id"].to_pylist(), what, storage_options)
    return retry_commit(label, uri, attempt, storage_options, max_attempts)


def _columns_label(uri: str, video_ids: Sequence[str], what: str, storage_options: dict[str, str] | None) -> str:
    if not video_ids:
        return f"{what} of no videos"
    first = video_ids[0]
    try:
        found = (
            open_table(uri, storage_options)
            .to_table(columns=["shard"], filter=f"video_id = {sql_literal(first)}", limit=1)["shard"]
            .to_pylist()
        )
    except (OSError, ValueError):
        found = []
    where = f"shard {found[0]}" if found else f"video {first}"
    return f"{what} of {where} ({len(video_ids)} videos)"
