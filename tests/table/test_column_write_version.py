"""A column write returns the version its own commit made, even when another writer commits right
after it: the step records that version and checks the rows there, not another writer's commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from lance.dataset import MergeInsertBuilder

from kinetics_assets.table import (
    DEPTH_FIELDS,
    TRANSCRIPT_FIELDS,
    commit_shard,
    ensure_depth_columns,
    ensure_transcript_columns,
    open_table,
    write_depth,
    write_shard_fragments,
    write_transcripts,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def _publish(uri: str, shard: str, ids: list[str]) -> None:
    rows = [{"video_id": i, "shard": shard, "status": "ok", "video": b"bytes of " + i.encode()} for i in ids]
    commit_shard(uri, shard, write_shard_fragments(rows, uri), properties={"step": "transcode"})


def _depth_row(video_id: str) -> dict[str, Any]:
    return {"video_id": video_id, "depth": b"d" + video_id.encode(), "depth_status": "ok", "depth_frames": 3}


def _transcript_row(video_id: str) -> dict[str, Any]:
    return {
        "video_id": video_id,
        "transcript_status": "ok",
        "transcript_text": "said in " + video_id,
        "transcript_processed_at": datetime.now(UTC),
    }


def _ids_of(field: Any) -> list[int]:
    """A Lance field's id and those of its children (a list column's items)."""
    return [field.id(), *(i for child in field.children() for i in _ids_of(child))]


WRITERS = {
    "depth": (ensure_depth_columns, write_depth, _depth_row, DEPTH_FIELDS, "depth"),
    "transcripts": (
        ensure_transcript_columns,
        write_transcripts,
        _transcript_row,
        TRANSCRIPT_FIELDS,
        "transcript_text",
    ),
}


@pytest.mark.parametrize("group", sorted(WRITERS))
def test_the_returned_version_is_the_column_write_not_a_commit_that_landed_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: str
) -> None:
    ensure_columns, write, make_row, fields, probe = WRITERS[group]
    uri = str(tmp_path / "t.lance")
    _publish(uri, "a", ["a-0", "a-1"])
    ensure_columns(uri)

    # Another writer commits the moment Lance has committed the column write, before the call under
    # test can read anything back: the boundary is Lance's own merge-insert call.
    real_execute: Callable[..., Any] = MergeInsertBuilder.execute
    intrusions: list[int] = []

    def execute_then_another_writer_commits(self: MergeInsertBuilder, *args: Any, **kwargs: Any) -> Any:
        stats = real_execute(self, *args, **kwargs)
        _publish(uri, "intruder", ["intruder-0"])
        intrusions.append(open_table(uri).version)
        return stats

    monkeypatch.setattr(MergeInsertBuilder, "execute", execute_then_another_writer_commits)
    version = write(uri, [make_row("a-0"), make_row("a-1")])
    monkeypatch.undo()

    assert len(intrusions) == 1
    assert intrusions[0] == version + 1, "the other writer's commit landed after the column write"
    latest = open_table(uri)
    assert latest.read_transaction(intrusions[0]).transaction_properties["shard"] == "intruder"

    # The returned version is the commit that wrote these columns, and it holds them.
    txn = latest.read_transaction(version)
    assert txn.operation.update_mode == "rewrite_columns"
    names = {f.name for f in fields}
    field_ids = {i for f in latest.lance_schema.fields() if f.name() in names for i in _ids_of(f)}
    assert set(txn.operation.fields_modified) <= field_ids
    assert set(txn.operation.fields_modified)
    assert (txn.transaction_properties or {}).get("shard") != "intruder"
    at_version = open_table(uri, version=version).to_table(columns=["video_id", probe]).to_pylist()
    expected = {r["video_id"]: r[probe] for r in (make_row("a-0"), make_row("a-1"))}
    assert {r["video_id"]: r[probe] for r in at_version} == expected
