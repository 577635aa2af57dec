"""Where every shard stands: the Dagster instance (downloads, runs) joined with the Lance table (rows).

The table says what data exists; the instance says what was attempted and when. Neither alone
answers "which shards still need work", so `kinetics status` reads both. This module reads the
instance (hence Dagster); the table side is a query in `kinetics_assets.qa`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa

from kinetics_assets.qa import SHARD_STATE_SQL, open_qa, query
from kinetics_assets.table import table_exists

if TYPE_CHECKING:
    from collections.abc import Sequence

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
RAW_ASSET = dg.AssetKey("raw_archives")

STATUS_SCHEMA = pa.schema(
    [
        pa.field("shard", pa.string()),
        pa.field("downloaded", pa.string()),
        pa.field("ok", pa.int64()),
        pa.field("failed", pa.int64()),
        pa.field("depth_ok", pa.int64()),
        pa.field("depth_failed", pa.int64()),
        pa.field("transcribed", pa.int64()),
        pa.field("speech", pa.int64()),
        pa.field("last_run", pa.string()),
        pa.field("run_status", pa.string()),
        pa.field("run_time", pa.timestamp("s", tz="UTC")),
        pa.field("note", pa.string()),
    ]
)


def table_state(lance_uri: str, storage_options: dict[str, str] | None = None) -> dict[str, dict]:
    """Per shard: ok, failed, depth_ok, depth_failed, transcribed (ok videos with a transcript
    status) and speech (those with text) from the table; empty when there is no table yet.
    """
    if not table_exists(lance_uri, storage_options):
        return {}
    rows = query(open_qa(lance_uri, storage_options), SHARD_STATE_SQL).to_pylist()
    return {r["shard"]: r for r in rows}


def run_partitions(run: dg.DagsterRun, partition_keys: Sequence[str]) -> list[str]:
    """The partitions a run covers: its one partition, or every key of its range (in key order)."""
    tags = run.tags
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start is not None and end is not None and start in partition_keys and end in partition_keys:
        keys = list(partition_keys)
        return keys[keys.index(start) : keys.index(end) + 1]
    return []


def latest_runs(instance: dg.DagsterInstance, shards: Sequence[str], limit: int = 10_000) -> dict[str, dg.RunRecord]:
    """The newest run of each shard's partition (any job: materialize, backfill, CLI), whether the
    run covered that partition alone or a range of partitions.
    """
    if not shards:
        return {}
    latest: dict[str, dg.RunRecord] = {}
    for record in instance.get_run_records(limit=limit):  # newest first
        for shard in run_partitions(record.dagster_run, shards):
            latest.setdefault(shard, record)
        if len(latest) == len(shards):
            break
    return latest


def _run_time(record: dg.RunRecord) -> dt.datetime:
    timestamp = record.end_time or record.start_time or record.create_timestamp.timestamp()
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).replace(microsecond=0)


def shard_status(
    instance: dg.DagsterInstance,
    partition_keys: Sequence[str],
    lance_uri: str,
    storage_options: dict[str, str] | None = None,
    *,
    only_active: bool = False,
) -> pa.Table:
    """One row per partition key (plus table shards the configuration no longer lists).

    `only_active` keeps the shards with any state: downloaded, rows in the table, or a run.
    """
    rows_by_shard = table_state(lance_uri, storage_options)
    known = list(partition_keys)
    extra = sorted(set(rows_by_shard) - set(known))
    shards = known + extra
    downloaded = instance.get_materialized_partitions(RAW_ASSET)
    runs = latest_runs(instance, shards)
    out = []
    for shard in shards:
        counts = rows_by_shard.get(shard, {})
        run = runs.get(shard)
        if only_active and not (shard in downloaded or counts or run):
            continue
        out.append(
            {
                "shard": shard,
                "downloaded": "yes" if shard in downloaded else "no",
                "ok": counts.get("ok", 0),
                "failed": counts.get("failed", 0),
                "depth_ok": counts.get("depth_ok", 0),
                "depth_failed": counts.get("depth_failed", 0),
                "transcribed": counts.get("transcribed", 0),
                "speech": counts.get("speech", 0),
                "last_run": run.dagster_run.run_id[:8] if run else None,
                "run_status": run.dagster_run.status.value if run else None,
                "run_time": _run_time(run) if run else None,
                "note": "not a partition of the current configuration" if shard in extra else None,
            }
        )
    return pa.Table.from_pylist(out, schema=STATUS_SCHEMA)
