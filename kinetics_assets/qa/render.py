"""QA answers drawn for people: plain-text tables for the terminal, markdown tables for the report,
and PNG bar charts (matplotlib through its Agg canvas directly, so no global backend is switched).
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import pyarrow as pa

from kinetics_assets.qa.queries import EMPTY_NOTES, TITLES

if TYPE_CHECKING:
    from collections.abc import Mapping

    from matplotlib.figure import Figure


def _cell(value: object, max_width: int) -> str:
    if value is None:
        text = ""
    elif isinstance(value, float):
        text = "nan" if math.isnan(value) else f"{value:.3f}".rstrip("0").rstrip(".")
    elif hasattr(value, "isoformat"):
        text = value.isoformat(sep=" ", timespec="seconds") if hasattr(value, "hour") else value.isoformat()
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= max_width else text[: max_width - 3] + "..."


def format_table(table: pa.Table, max_rows: int | None = 20, max_width: int = 60, empty: str = "(no rows)") -> str:
    """Columns padded to width, numbers right-aligned; rows beyond `max_rows` are counted, not shown."""
    names = table.column_names
    shown = table if max_rows is None else table.slice(0, max_rows)
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) for t in table.schema.types]
    rows = [[_cell(v, max_width) for v in row.values()] for row in shown.to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True)]
        return "  ".join(padded).rstrip()

    out = [line(list(names)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    if not rows:
        out.append(empty)
    if len(shown) < len(table):
        out.append(f"... {len(table) - len(shown)} more rows")
    return "\n".join(out)


def format_report(results: Mapping[str, pa.Table], max_rows: int | None = 20) -> str:
    parts = []
    for name, table in results.items():
        title = TITLES.get(name, name)
        empty = f"({EMPTY_NOTES[name]})" if name in EMPTY_NOTES else "(no rows)"
        parts.append(f"== {title} [{name}] ==\n{format_table(table, max_rows, empty=empty)}")
    return "\n\n".join(parts)


def markdown_table(table: pa.Table, max_rows: int | None = 50, max_width: int = 120, empty: str = "no rows") -> str:
    """A GitHub-style markdown table (cells as the terminal shows them, `|` escaped); `empty` in
    italics when there are no rows.
    """
    if table.num_rows == 0:
        return f"_{empty}_"
    shown = table if max_rows is None else table.slice(0, max_rows)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(table.column_names), line(["---"] * table.num_columns)]
    out += [line([_cell(v, max_width) for v in row.values()]) for row in shown.to_pylist()]
    if len(shown) < len(table):
        out.append(f"\n_... {len(table) - len(shown)} more rows_")
    return "\n".join(out)


def figure_png(figure: Figure) -> bytes:
    """A matplotlib figure as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return buffer.getvalue()


_UPRIGHT_LABELS = 8  # more bar labels than this are slanted, so that they do not overlap


def histogram_png(table: pa.Table, category: str, count: str = "videos", title: str = "") -> bytes:
    """A bar chart of one histogram query (one bar per row, in query order)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    labels = [_cell(v, 20) for v in table.column(category).to_pylist()]
    values = [v or 0 for v in table.column(count).to_pylist()]
    figure = Figure(figsize=(max(4.0, 0.45 * len(labels) + 1.5), 3.0), dpi=90)
    axes = figure.add_subplot()
    axes.bar(range(len(values)), values, color="#4c72b0")
    axes.set_xticks(
        range(len(labels)),
        labels,
        rotation=45 if len(labels) > _UPRIGHT_LABELS else 0,
        ha="right" if len(labels) > _UPRIGHT_LABELS else "center",
    )
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(category)
    axes.set_ylabel(count)
    axes.set_title(title or category)
    if not values:
        axes.text(0.5, 0.5, "no ok videos", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    return figure_png(figure)
