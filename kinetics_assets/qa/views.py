"""The DuckDB views QA queries run over: `videos`, `failures`, `depth`, `transcripts`,
`near_duplicates` (from the side table, see `dedup.store`) and, when an annotations CSV is given,
`annotations`.

DuckDB scans the `lance.LanceDataset` (a pyarrow dataset) with projection and filter pushdown, but
fails on any query that touches a blob v2 column, and the `depth` column is large. So the base
dataset is registered under a private name and users query views that leave the payload columns
out. `depth`, `transcripts` and `near_duplicates` exist (typed, empty) on a table without them.

DuckDB has no type for Arrow's half float: it cannot even bind a dataset with a float16 column (the
`embedding` column). Such a table is registered as a Lance scanner of the other columns, payloads
left out too: every query then reads those columns whole (no pushdown), which QA's scans do anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from kinetics_assets.dedup import read_near_duplicates
from kinetics_assets.dedup.store import PAIR_TYPE
from kinetics_assets.ingest.annotations import Annotation, load_annotations
from kinetics_assets.table import DEPTH_FIELDS, TRANSCRIPT_FIELDS, open_table, sql_literal, table_exists

if TYPE_CHECKING:
    import lance

BASE_VIEW = "_lance_videos"
DEPTH_COLUMNS = [f.name for f in DEPTH_FIELDS if f.name != "depth"]
DEPTH_VIEW_SCHEMA = pa.schema(
    [pa.field("video_id", pa.string()), pa.field("shard", pa.string()), pa.field("status", pa.string())]
    + [f for f in DEPTH_FIELDS if f.name != "depth"]
)
TRANSCRIPT_COLUMNS = [f.name for f in TRANSCRIPT_FIELDS]
TRANSCRIPT_VIEW_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string()),
        pa.field("shard", pa.string()),
        pa.field("label", pa.string()),
        pa.field("status", pa.string()),
        *TRANSCRIPT_FIELDS,
    ]
)
NEAR_DUPLICATES_VIEW_SCHEMA = pa.schema(
    [
        pa.field("video_a", pa.string()),
        pa.field("label_a", pa.string()),
        pa.field("shard_a", pa.string()),
        pa.field("video_b", pa.string()),
        pa.field("label_b", pa.string()),
        pa.field("shard_b", pa.string()),
        *(f for f in PAIR_TYPE if f.name != "other"),  # a pair's fields as the side table stores them
        pa.field("duplicate_of", pa.string()),  # the keeper of both videos' group
        pa.field("group_size", pa.int32()),
        pa.field("source_version", pa.int64()),  # the table version the pairs were found in
    ]
)
ANNOTATIONS_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string()),
        pa.field("label", pa.string()),
        pa.field("youtube_id", pa.string()),
        pa.field("time_start", pa.int32()),
        pa.field("time_end", pa.int32()),
        pa.field("split", pa.string()),
    ]
)


class QaError(ValueError):
    """The table cannot be queried; the message names the uri and what to do."""


def _is_payload(field: pa.Field) -> bool:
    """Columns DuckDB must not read: blob v2 (an extension type) and raw binary payloads."""
    return (
        isinstance(field.type, pa.ExtensionType)
        or pa.types.is_binary(field.type)
        or pa.types.is_large_binary(field.type)
    )


def _has_half_float(arrow_type: pa.DataType) -> bool:
    """float16 anywhere in the type (a vector of float16 included): DuckDB cannot bind it."""
    if pa.types.is_float16(arrow_type):
        return True
    return any(_has_half_float(arrow_type.field(i).type) for i in range(arrow_type.num_fields))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def annotations_table(annotations: Mapping[str, Annotation]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "video_id": key,
                "label": a.label,
                "youtube_id": a.youtube_id,
                "time_start": a.time_start,
                "time_end": a.time_end,
                "split": a.split,
            }
            for key, a in annotations.items()
        ],
        schema=ANNOTATIONS_SCHEMA,
    )


def near_duplicate_pairs(ds: lance.LanceDataset, storage_options: dict[str, str] | None = None) -> pa.Table:
    """Every pair of the side table of `ds`'s table, one row each, with both videos' label and shard
    at `ds`'s version (null for a video not in it); empty when there is no side table. The labels
    are looked up here: DuckDB cannot push a join's filter into the Lance scan.
    """
    stored = read_near_duplicates(ds.uri, storage_options=storage_options)
    if stored is None or stored.table.num_rows == 0:
        return NEAR_DUPLICATES_VIEW_SCHEMA.empty_table()
    ids = stored.table["video_id"].to_pylist()
    where = "video_id IN (" + ", ".join(sql_literal(v) for v in ids) + ")"
    known: dict[str, dict[str, str | None]] = {}
    for r in ds.to_table(columns=["video_id", "label", "shard"], filter=where).to_pylist():
        known.setdefault(r["video_id"], r)
    none: dict[str, str | None] = {}
    rows = [
        {
            "video_a": row["video_id"],
            "label_a": known.get(row["video_id"], none).get("label"),
            "shard_a": known.get(row["video_id"], none).get("shard"),
            "video_b": pair["other"],
            "label_b": known.get(pair["other"], none).get("label"),
            "shard_b": known.get(pair["other"], none).get("shard"),
            **{k: v for k, v in pair.items() if k != "other"},
            "duplicate_of": row["duplicate_of"],
            "group_size": row["group_size"],
            "source_version": row["source_version"],
        }
        for row in stored.table.to_pylist()
        for pair in row["pairs"] or []
    ]
    return pa.Table.from_pylist(rows, schema=NEAR_DUPLICATES_VIEW_SCHEMA)


def connect(
    ds: lance.LanceDataset,
    annotations: Mapping[str, Annotation] | str | Path | None = None,
    *,
    storage_options: dict[str, str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the QA views over an opened (and so version-pinned) dataset.
    `near_duplicates` is the side table's latest answer (`storage_options` open it), whichever
    table version that answer was found in (its `source_version` column says which).
    """
    con = duckdb.connect()
    fields = [f for f in ds.schema if not _has_half_float(f.type)]
    if len(fields) == len(ds.schema):
        con.register(BASE_VIEW, ds)
    else:
        fields = [f for f in fields if not _is_payload(f)]
        con.register(BASE_VIEW, ds.scanner(columns=[f.name for f in fields]))
    names = {f.name for f in fields}
    depth_names = set(DEPTH_COLUMNS) | {"depth"}
    video_columns = [f.name for f in fields if not _is_payload(f) and f.name not in depth_names]
    con.execute(f"CREATE VIEW videos AS SELECT {', '.join(map(_quote, video_columns))} FROM {BASE_VIEW}")  # noqa: S608 - quoted column names
    failure_columns = [
        c
        for c in ("shard", "video_id", "error_type", "error_message", "source_member", "attempts", "processed_at")
        if c in names
    ]
    con.execute(
        f"CREATE VIEW failures AS SELECT {', '.join(map(_quote, failure_columns))} FROM {BASE_VIEW} "  # noqa: S608 - quoted column names
        "WHERE status = 'failed'"
    )
    _column_group_view(con, "depth", DEPTH_VIEW_SCHEMA, DEPTH_COLUMNS, names)
    _column_group_view(con, "transcripts", TRANSCRIPT_VIEW_SCHEMA, TRANSCRIPT_COLUMNS, names)
    con.register("_near_duplicates", near_duplicate_pairs(ds, storage_options))
    con.execute("CREATE VIEW near_duplicates AS SELECT * FROM _near_duplicates")
    if annotations is not None:
        if not isinstance(annotations, Mapping):
            annotations = load_annotations(Path(annotations))
        con.register("_annotations", annotations_table(annotations))
        con.execute("CREATE VIEW annotations AS SELECT * FROM _annotations")
    return con


def _column_group_view(
    con: duckdb.DuckDBPyConnection, view: str, schema: pa.Schema, group: list[str], names: set[str]
) -> None:
    """A view of one group of derived columns; typed and empty when the table lacks them, so that
    queries over it answer "none yet" instead of failing.
    """
    if all(c in names for c in group):
        con.execute(f"CREATE VIEW {view} AS SELECT {', '.join(map(_quote, schema.names))} FROM {BASE_VIEW}")  # noqa: S608 - quoted column names
    else:
        con.register(f"_{view}_absent", schema.empty_table())
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM _{view}_absent")  # noqa: S608 - the view names are ours


def open_dataset(
    uri: str, storage_options: dict[str, str] | None = None, version: int | None = None
) -> lance.LanceDataset:
    if not table_exists(uri, storage_options):
        raise QaError(f"no Lance table at {uri}: materialize transcoded_videos for a shard first")
    try:
        return open_table(uri, storage_options, version=version)
    except (ValueError, OSError) as exc:
        raise QaError(f"cannot open {uri} at version {version}: {exc}") from exc


def open_qa(
    uri: str,
    storage_options: dict[str, str] | None = None,
    version: int | None = None,
    annotations: Mapping[str, Annotation] | str | Path | None = None,
) -> duckdb.DuckDBPyConnection:
    """DuckDB views over the table at `uri` (at `version`, default the latest)."""
    return connect(open_dataset(uri, storage_options, version), annotations, storage_options=storage_options)


def has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()
    return bool(rows[0][0])
