"""QA over the table: DuckDB views (views.py), canned queries (queries.py), text and markdown tables
and histograms (render.py), frame-beside-depth previews (previews.py). No Dagster, no Ray: the
`kinetics qa` command, the `qa_report` asset and the tests share it.
"""

from kinetics_assets.qa.queries import (
    DUPLICATE_IDS_SQL,
    EMPTY_NOTES,
    NO_SPEECH,
    OK_WITHOUT_BYTES_SQL,
    QUERIES,
    SHARD_STATE_SQL,
    TITLES,
    TRANSCRIPT_EXAMPLES_SQL,
    TRANSCRIPT_QUERIES,
    contact_sheet_ids,
    query,
    run_qa,
)
from kinetics_assets.qa.render import figure_png, format_report, format_table, histogram_png, markdown_table
from kinetics_assets.qa.views import QaError, connect, open_dataset, open_qa

__all__ = [
    "DUPLICATE_IDS_SQL",
    "EMPTY_NOTES",
    "NO_SPEECH",
    "OK_WITHOUT_BYTES_SQL",
    "QUERIES",
    "SHARD_STATE_SQL",
    "TITLES",
    "TRANSCRIPT_EXAMPLES_SQL",
    "TRANSCRIPT_QUERIES",
    "QaError",
    "connect",
    "contact_sheet_ids",
    "figure_png",
    "format_report",
    "format_table",
    "histogram_png",
    "markdown_table",
    "open_dataset",
    "open_qa",
    "query",
    "run_qa",
]
