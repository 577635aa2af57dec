"""Opening the table and reading one shard's rows and fragments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lance

from kinetics_assets.table.schema import SCALAR_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import pyarrow as pa


def open_table(
    uri: str, storage_options: dict[str, str] | None = None, version: int | None = None
) -> lance.LanceDataset:
    return lance.dataset(uri, version=version, storage_options=storage_options or None)


def table_exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    try:
        open_table(uri, storage_options)
    except (ValueError, FileNotFoundError, OSError):
        return False
    return True


def shard_fragment_ids(ds: lance.LanceDataset, shard: str) -> set[int]:
    table = ds.to_table(columns=[], filter=f"shard = {sql_literal(shard)}", with_row_address=True)
    return {addr >> 32 for addr in table["_rowaddr"].to_pylist()}


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def id_predicate(video_ids: Iterable[str]) -> str:
    return "video_id IN (" + ", ".join(sql_literal(v) for v in sorted(video_ids)) + ")"


def shard_rows(ds: lance.LanceDataset, shard: str, columns: Sequence[str] | None = None) -> pa.Table:
    return ds.to_table(columns=list(columns or SCALAR_COLUMNS), filter=f"shard = {sql_literal(shard)}")


def shard_ok_rows(
    ds: lance.LanceDataset, shard: str, columns: Sequence[str], *, with_row_id: bool = False
) -> list[dict[str, Any]]:
    """The ok videos of one shard, as rows of `columns` (and `_rowid` when asked)."""
    return ds.to_table(
        columns=list(columns), filter=f"shard = {sql_literal(shard)} AND status = 'ok'", with_row_id=with_row_id
    ).to_pylist()
