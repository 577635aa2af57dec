"""The common start of the steps that add columns to transcoded videos (depth, transcripts): which of
the run's shards have rows in the table, and the state of each shard's ok videos at one version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kinetics_assets.steps.failures import ShardFailure, UpstreamMissing
from kinetics_assets.table import open_table, sql_literal, table_exists

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import lance


@dataclass
class ShardState:
    """`rows`: the ok videos of each shard that has rows (`_rowid` included), read at `ds`'s version;
    `missing`: a ShardFailure for each shard with no rows at all.
    """

    ds: lance.LanceDataset | None
    rows: dict[str, list[dict]] = field(default_factory=dict)
    missing: list[ShardFailure] = field(default_factory=list)


def shard_filter(shards: Sequence[str]) -> str:
    return "shard IN (" + ", ".join(sql_literal(s) for s in shards) + ")"


def read_shard_state(
    shards: Sequence[str],
    *,
    lance_uri: str,
    storage_options: dict | None,
    columns: Sequence[str],
    asset: str,
    add_columns: Callable[[str, dict | None], object],
    raise_errors: bool,
) -> ShardState:
    """Read the ok videos of `shards`, first adding the step's columns (`add_columns`) if the table
    lacks them. A shard with no rows is missing upstream: named in `missing`, or raised as
    UpstreamMissing with `raise_errors`.
    """
    present = _shards_in_table(lance_uri, storage_options, shards)
    state = ShardState(ds=None)
    for shard in shards:
        if shard not in present:
            error = UpstreamMissing(
                f"shard {shard}: no rows in {lance_uri}; materialize transcoded_videos for this partition "
                f"first (or select '*{asset}' to include everything upstream)"
            )
            if raise_errors:
                raise error
            state.missing.append(ShardFailure(shard, f"UpstreamMissing: {error}"))
    shards = [s for s in shards if s in present]
    if not shards:
        return state
    add_columns(lance_uri, storage_options)
    state.ds = open_table(lance_uri, storage_options)
    state.rows = {s: [] for s in shards}
    table = state.ds.to_table(
        columns=list(columns), filter=f"{shard_filter(shards)} AND status = 'ok'", with_row_id=True
    )
    for row in table.to_pylist():
        state.rows[row["shard"]].append(row)
    return state


def _shards_in_table(lance_uri: str, storage_options: dict | None, shards: Sequence[str]) -> set[str]:
    if not table_exists(lance_uri, storage_options) or not shards:
        return set()
    table = open_table(lance_uri, storage_options).to_table(columns=["shard"], filter=shard_filter(shards))
    return set(table["shard"].to_pylist())
