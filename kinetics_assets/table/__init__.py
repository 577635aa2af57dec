"""The Lance table of clips: schema, fragment writes, per-shard commits, column writes, maintenance.

schema.py holds the columns, dataset.py opens the table and reads a shard, retry.py is the one
retry policy of every commit loop, commit.py the per-shard commit protocol, columns.py the depth
and transcript column writes, maintenance.py the clean-up of old versions. No Dagster, no Ray.
"""

from kinetics_assets.table.columns import (
    ensure_depth_columns,
    ensure_transcript_columns,
    write_columns,
    write_depth,
    write_transcripts,
)
from kinetics_assets.table.commit import (
    CommitResult,
    add_missing_columns,
    commit_shard,
    ensure_table,
    write_shard_fragments,
)
from kinetics_assets.table.dataset import (
    open_table,
    shard_fragment_ids,
    shard_ok_rows,
    shard_rows,
    sql_literal,
    table_exists,
)
from kinetics_assets.table.maintenance import CleanupResult, cleanup_old_versions, versions_to_clean_up
from kinetics_assets.table.retry import COMMIT_ATTEMPTS, COMMIT_BACKOFF_S, CommitContention, retry_commit
from kinetics_assets.table.schema import (
    BLOB_COLUMNS,
    DEPTH_FIELDS,
    DEPTH_SCHEMA,
    SCALAR_COLUMNS,
    SEGMENT_TYPE,
    TRANSCRIPT_FIELDS,
    TRANSCRIPT_SCHEMA,
    VIDEO_SCHEMA,
    rows_to_table,
)
from kinetics_assets.table.video_row import VideoRow, VideoStatus

__all__ = [
    "BLOB_COLUMNS",
    "COMMIT_ATTEMPTS",
    "COMMIT_BACKOFF_S",
    "DEPTH_FIELDS",
    "DEPTH_SCHEMA",
    "SCALAR_COLUMNS",
    "SEGMENT_TYPE",
    "TRANSCRIPT_FIELDS",
    "TRANSCRIPT_SCHEMA",
    "VIDEO_SCHEMA",
    "CleanupResult",
    "CommitContention",
    "CommitResult",
    "VideoRow",
    "VideoStatus",
    "add_missing_columns",
    "cleanup_old_versions",
    "commit_shard",
    "ensure_depth_columns",
    "ensure_table",
    "ensure_transcript_columns",
    "open_table",
    "retry_commit",
    "rows_to_table",
    "shard_fragment_ids",
    "shard_ok_rows",
    "shard_rows",
    "sql_literal",
    "table_exists",
    "versions_to_clean_up",
    "write_columns",
    "write_depth",
    "write_shard_fragments",
    "write_transcripts",
]
