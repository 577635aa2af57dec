"""The stage contract's own rules: rows typed where they are made, their schema bound at import, and
batches formed the same way for every executor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa
import pytest

from kinetics_assets.stages import DepthRow, Prepared, TableSnapshot, VideoTask
from kinetics_assets.stages.batching import Batcher
from kinetics_assets.stages.rows import StageRow, bind, column


def test_a_mistyped_field_fails_where_the_row_is_made_naming_row_video_and_column():
    with pytest.raises(TypeError, match=r"DepthRow of v1: frames='many' does not fit column depth_frames"):
        DepthRow(video_id="v1", status="ok", frames="many")
    with pytest.raises(TypeError, match="status"):
        DepthRow(video_id="v1")  # a missing field: the dataclass says which


def test_a_row_that_drifts_from_its_schema_fails_at_import():
    @dataclass(frozen=True, kw_only=True)
    class Drifted(StageRow):
        prefix: ClassVar[str] = "x"
        schema: ClassVar = pa.schema([pa.field("video_id", pa.string()), pa.field("x_status", pa.string())])
        video_id: str
        status: str
        error: str | None = None
        extra: int | None = column()

    with pytest.raises(TypeError, match="x_extra"):
        bind(Drifted, model=False)


def _prepared(name: str, key: object, weight: int) -> Prepared:
    snapshot = TableSnapshot(uri="memory://t", version=1)
    task = VideoTask(video_id=name, row_id=0, shard="s", duration_s=None, snapshot=snapshot)
    return Prepared(task=task, meta=None, payload=None, batch_key=key, weight=weight)


def test_batches_hold_one_key_fill_up_to_the_size_and_wait_unless_forced():
    batcher = Batcher(batch_size=4)
    for name, key, weight in [("a", "360p", 2), ("b", "240p", 3), ("c", "360p", 1), ("d", "360p", 3)]:
        batcher.add(_prepared(name, key, weight))
    # a+c fill 3 of 4 and d would overflow: a full-or-forced batch only.
    assert [[p.task.video_id for p in b] for b in batcher.take(force=False)] == []
    assert [[p.task.video_id for p in b] for b in batcher.take(force=True)] == [["a", "c"], ["b"], ["d"]]
    batcher.add(_prepared("e", "360p", 9))  # heavier than a batch: goes alone, at once
    assert [[p.task.video_id for p in b] for b in batcher.take(force=False)] == [["e"]]
