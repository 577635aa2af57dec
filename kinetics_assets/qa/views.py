"""The DuckDB views QA queries run over: `videos`, `failures`, `depth`, `transcripts` and, when an
annotations CSV is given, `annotations`.

DuckDB scans the `lance.LanceDataset` (a pyarrow dataset) with projection and filter pushdown, but
fails on any query that touches a blob v2 column, and the `depth` column is large. So the base
dataset is registered under a private name and users query views that leave the payload columns
out. `depth` and `transcripts` exist (typed, empty) on a table without those columns.

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

from kinetics_assets.ingest.annotations import Annotation, load_annotations
from kinetics_assets.table import DEPTH_FIELDS, TRANSCRIPT_FIELDS, open_table, table_exists

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


def connect(
    ds: lance.LanceDataset, annotations: Mapping[str, Annotation] | str | Path | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the QA views over an opened (and so version-pinned) dataset."""
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
    return connect(open_dataset(uri, storage_options, version), annotations)


def has_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()
    return bool(rows[0][0])
