"""Rows typed where they are made: a row dataclass's values checked against the Arrow columns that
will hold them, so a mistyped value fails in the worker that made it, naming the row, the video and
the column, not at the commit of a whole shard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from collections.abc import Iterable


def check_values(row: object, columns: Iterable[tuple[str, str]], schema: pa.Schema) -> None:
    """Raise TypeError when a value of `row` (attribute, column) does not fit its column's type."""
    for name, column in columns:
        value, arrow_type = getattr(row, name), schema.field(column).type
        try:
            pa.scalar(value, type=arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            video = getattr(row, "video_id", "?")
            raise TypeError(
                f"{type(row).__name__} of {video}: {name}={value!r:.80} does not fit column {column} "
                f"({arrow_type}): {exc}"
            ) from exc
