"""A stage's row: a frozen dataclass bound to its column group's Arrow schema, so a missing field
fails when the row is made, a mistyped one too, and a row that drifts from its schema fails at import.

A field declared with `column()` is stored as `<prefix>_<field>` (or the name it gives); other
fields travel with the row to the shard's summary only. Every group also holds the provenance
columns the shard loop fills once per commit: the settings, and for a model stage the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from kinetics_assets.table.typed_rows import check_values

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from kinetics_assets.stages.contract import ModelInfo

__all__ = ["Provenance", "StageRow", "column", "rows_to_arrow"]

PROVENANCE = ("processed_at", "settings")
MODEL_PROVENANCE = ("model", "model_revision", "pretrained")


class StageRow:
    """Base of every stage's row dataclass, which declares these fields in its own column order
    (a base with fields would put them first); the row is checked against its columns when made.
    """

    prefix: ClassVar[str]
    schema: ClassVar[pa.Schema]
    """The column group: `video_id`, the row's columns, then the provenance columns."""
    video_id: str
    status: str
    error: str | None

    def __post_init__(self) -> None:
        validate_row(self)


def column(*, name: str | None = None, default: Any = None) -> Any:  # noqa: ANN401 - a dataclass field, typed by its annotation
    """A row field stored in its group's column `<prefix>_<field>` (or `name`)."""
    return dataclasses.field(default=default, metadata={"column": name})


def _columns(row_type: type[StageRow]) -> list[tuple[str, str]]:
    """(field, column) of each stored field."""
    fields = dataclasses.fields(row_type)  # type: ignore[arg-type]
    named = [(f.name, f.metadata["column"] or f"{row_type.prefix}_{f.name}") for f in fields if "column" in f.metadata]
    return [(f.name, f"{row_type.prefix}_{f.name}") for f in fields if f.name in ("status", "error")] + named


def bind(row_type: type[StageRow], *, model: bool) -> type[StageRow]:
    """Check, at import, that the row's columns and the provenance are exactly its schema."""
    prefix = row_type.prefix
    provenance = [*(MODEL_PROVENANCE if model else ()), *PROVENANCE]
    declared = ["video_id", *sorted(c for _, c in _columns(row_type)), *sorted(f"{prefix}_{p}" for p in provenance)]
    stored = ["video_id", *sorted(n for n in row_type.schema.names if n != "video_id")]
    if sorted(declared) != sorted(stored):
        raise TypeError(f"{row_type.__name__} declares {declared}, its schema holds {stored}")
    return row_type


def validate_row(row: StageRow) -> None:
    """Raise TypeError naming the row, the video and the field whose value its column cannot hold."""
    check_values(row, _columns(type(row)), row.schema)


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What made a commit's rows: the same for every row of it."""

    settings: str
    processed_at: datetime
    model: ModelInfo | None = None
    pretrained: bool | None = None


def rows_to_arrow(
    rows: Sequence[StageRow], row_type: type[StageRow], provenance: Provenance, *, schema: pa.Schema | None = None
) -> pa.Table:
    """The rows as a table of their column group (`schema`, default the row type's: a stage's
    `columns()`), the provenance columns filled from `provenance`.
    """
    prefix, schema = row_type.prefix, row_type.schema if schema is None else schema
    columns: dict[str, list[Any]] = {"video_id": [r.video_id for r in rows]}
    for name, col in _columns(row_type):
        columns[col] = [getattr(r, name) for r in rows]
    made_by = provenance.model
    shared: dict[str, Any] = {
        "processed_at": provenance.processed_at,
        "settings": provenance.settings,
        "model": made_by.model_id if made_by else None,
        "model_revision": made_by.revision if made_by else None,
        "pretrained": provenance.pretrained,
    }
    for name, value in shared.items():
        if f"{prefix}_{name}" in schema.names:
            columns[f"{prefix}_{name}"] = [value] * len(rows)
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)
