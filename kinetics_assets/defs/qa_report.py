"""`qa_report`: the whole table's QA at one pinned Lance version, as Dagster metadata and checks.

Not partitioned: it reads every shard. It depends on the partitioned assets only for lineage and
staleness (a non-partitioned asset downstream of partitioned ones depends on all their partitions),
so run it on its own (`--select qa_report`), not inside a shard's run.
"""

import base64
from typing import Any

import dagster as dg
import pyarrow as pa

from resources import StorageResource

TRANSCODED = dg.AssetKey("transcoded_videos")
DEPTH = dg.AssetKey("depth_maps")
TRANSCRIPTS = dg.AssetKey("transcripts")

HISTOGRAMS = {
    "duration_histogram": "from_s",
    "resolution_histogram": "source_short_side",
    "fps_histogram": "source_fps",
}


class QaReportConfig(dg.Config):
    version: int | None = None
    """Lance version to report on; default the latest at the start of the run (recorded either way)."""
    contact_sheet_videos: int = 8
    near_duplicate_pairs: int = 6
    """Top near-duplicate pairs shown side by side (when near_duplicates has run)."""
    max_table_rows: int = 500
    """Rows kept per table in the metadata (the label table of K700 has ~700)."""


QA_CHECKS = [
    dg.AssetCheckSpec("video_id_unique", asset="qa_report", description="no video_id appears twice in the table"),
    dg.AssetCheckSpec(
        "materialized_shards_in_table",
        asset="qa_report",
        description="every materialized transcoded_videos partition has rows at the reported version",
    ),
    dg.AssetCheckSpec("ok_rows_have_video_bytes", asset="qa_report", description="every ok row has bytes > 0"),
]


def _column_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    return "string"


def _record_value(value: float | str | None, kind: str) -> int | float | bool | str | None:
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    return str(value)


def table_metadata(table: pa.Table, max_rows: int = 500) -> dg.TableMetadataValue:
    kinds = {f.name: _column_type(f.type) for f in table.schema}
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in kinds.items()])
    records = [
        dg.TableRecord({name: _record_value(row[name], kinds[name]) for name in kinds})
        for row in table.slice(0, max_rows).to_pylist()
    ]
    return dg.MetadataValue.table(records, schema)


def png_markdown(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    # The UI's markdown sanitizer allows data: image sources (see the depth_maps preview).
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def require_table(asset: str, storage: StorageResource) -> None:
    """A table asset (this one, `embedding_index`, `near_duplicates`) fails on a missing table,
    naming its URI and what makes it.
    """
    from kinetics_assets.table import table_exists  # Lance: loaded by the step

    if not table_exists(storage.lance_uri, storage.storage_options):
        raise dg.Failure(
            f"{asset}: no Lance table at {storage.lance_uri}; materialize transcoded_videos for a shard first"
        )


@dg.asset(
    deps=[TRANSCODED, DEPTH, TRANSCRIPTS],
    check_specs=QA_CHECKS,
    group_name="kinetics",
    kinds={"duckdb", "lance"},
    description="Table-wide QA at a pinned Lance version: counts, failure causes, distributions, label and "
    "depth coverage, transcripts (status, languages, speech per label, examples), and a contact sheet of frames "
    "beside their depth.",
)
def qa_report(
    context: dg.AssetExecutionContext, config: QaReportConfig, storage: StorageResource
) -> dg.MaterializeResult:
    # DuckDB, matplotlib and Lance: loaded by the step, not the code location.
    from kinetics_assets import qa
    from kinetics_assets.qa.previews import contact_sheet_png, contact_sheet_samples, pair_samples, pair_sheet_png
    from kinetics_assets.table import open_table

    require_table("qa_report", storage)
    uri, options = storage.lance_uri, storage.storage_options
    ds = open_table(uri, options, version=config.version)
    context.log.info("qa_report: reading %s at version %d", uri, ds.version)
    con = qa.connect(ds, storage_options=options)
    results = qa.run_qa(con)

    metadata: dict[str, Any] = {"lance_uri": uri, "lance_version": ds.version}
    overview = results["overview"].to_pylist()[0]
    metadata.update({f"total_{k}": v for k, v in overview.items()})
    metadata["dagster/row_count"] = int(overview["videos"])
    for name, table in results.items():
        if name in qa.TRANSCRIPT_QUERIES:
            metadata[name] = dg.MetadataValue.md(
                qa.markdown_table(table, config.max_table_rows, empty=qa.EMPTY_NOTES[name])
            )
        elif name != "overview":
            metadata[name] = table_metadata(table, config.max_table_rows)
    metadata["transcript_examples"] = dg.MetadataValue.md(
        qa.markdown_table(qa.query(con, qa.TRANSCRIPT_EXAMPLES_SQL), empty=qa.NO_SPEECH)
    )
    for name, category in HISTOGRAMS.items():
        png = qa.histogram_png(results[name], category, title=qa.TITLES[name])
        metadata[f"{name}_png"] = png_markdown(png, qa.TITLES[name])
    samples = contact_sheet_samples(ds, qa.contact_sheet_ids(con, config.contact_sheet_videos))
    unreadable = [s.video_id for s in samples if s.error]
    if unreadable:
        context.log.warning("qa_report: contact sheet could not read %s", ", ".join(unreadable))
    metadata["contact_sheet"] = png_markdown(contact_sheet_png(samples), "middle frames and their depth")
    metadata["contact_sheet_videos"] = dg.MetadataValue.json([s.video_id for s in samples])
    top = results["near_duplicates"].slice(0, config.near_duplicate_pairs).to_pylist()
    if top:
        captions = [(p["video_a"], p["video_b"], f"{p['reason']} {p['score']:.2f}") for p in top]
        metadata["near_duplicate_sheet"] = png_markdown(
            pair_sheet_png(pair_samples(ds, captions)), "the top near-duplicate pairs side by side"
        )

    duplicates = qa.query(con, qa.DUPLICATE_IDS_SQL)
    in_table = {r[0] for r in con.sql("SELECT DISTINCT shard FROM videos").fetchall()}
    materialized = context.instance.get_materialized_partitions(TRANSCODED)
    absent = sorted(materialized - in_table)
    without_bytes = qa.query(con, qa.OK_WITHOUT_BYTES_SQL)
    checks = [
        dg.AssetCheckResult(
            check_name="video_id_unique",
            passed=duplicates.num_rows == 0,
            metadata={
                "duplicated_ids": duplicates.num_rows,
                "examples": dg.MetadataValue.json(duplicates.slice(0, 20).to_pylist()),
            },
        ),
        dg.AssetCheckResult(
            check_name="materialized_shards_in_table",
            passed=not absent,
            metadata={
                "materialized_partitions": len(materialized),
                "absent": dg.MetadataValue.json(absent[:100]),
                "lance_version": ds.version,
            },
        ),
        dg.AssetCheckResult(
            check_name="ok_rows_have_video_bytes",
            passed=without_bytes.num_rows == 0,
            metadata={
                "ok_rows_without_bytes": without_bytes.num_rows,
                "examples": dg.MetadataValue.json(without_bytes.slice(0, 20).to_pylist()),
            },
        ),
    ]
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(f"v{ds.version}"), check_results=checks)
