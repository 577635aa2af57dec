"""A clip's row in the video table: the size-change and bitrate columns, written and read back, and a
table made before those columns existed taking rows that have them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lance
import pyarrow as pa
import pytest

from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.steps.transcode_clip import ClipJob, process_clip
from kinetics_assets.table import VIDEO_SCHEMA, commit_shard, ensure_table, write_shard_fragments
from tests.harness.exotic_clips import marker_pattern, raw_elementary_stream

if TYPE_CHECKING:
    from pathlib import Path

NEW_COLUMNS = ("source_size_changes", "source_sizes", "source_bitrate", "bitrate", "video_maxrate")


def _job(video_id: str) -> ClipJob:
    return ClipJob(
        video_id=video_id,
        shard="s",
        release="custom",
        member=f"{video_id}.h264",
        source_url="file:///x",
        label=None,
        split=None,
        youtube_id=None,
        time_start=None,
        time_end=None,
    )


def test_size_changes_and_bitrates_reach_the_table(tmp_path: Path):
    data = raw_elementary_stream(
        "libx264", width=352, height=288, frames=10, pattern=marker_pattern
    ) + raw_elementary_stream("libx264", width=1280, height=720, frames=15, pattern=marker_pattern)
    row = process_clip(_job("v1"), data, TranscodeConfig())
    assert row.status == "ok", row.error_message
    uri = str(tmp_path / "t.lance")
    commit_shard(uri, "s", write_shard_fragments([row], uri))
    stored = (
        lance.dataset(uri).to_table(columns=["width", "height", "bytes", "duration_s", *NEW_COLUMNS]).to_pylist()[0]
    )
    assert (stored["width"], stored["height"]) == (640, 360)
    assert stored["source_size_changes"] == 1
    assert stored["source_sizes"] == [
        {"width": 352, "height": 288, "frames": 10},
        {"width": 1280, "height": 720, "frames": 15},
    ]
    assert stored["source_bitrate"] == round(len(data) * 8 / stored["duration_s"])
    assert stored["bitrate"] == round(stored["bytes"] * 8 / stored["duration_s"])
    assert stored["video_maxrate"] is not None
    assert stored["video_maxrate"] >= 64_000


def test_a_table_from_before_the_new_columns_takes_new_rows(tmp_path: Path):
    uri = str(tmp_path / "old.lance")
    old_schema = pa.schema([f for f in VIDEO_SCHEMA if f.name not in NEW_COLUMNS])
    old_row = pa.Table.from_pylist([{"video_id": "old1", "shard": "a", "status": "ok"}], schema=old_schema)
    lance.write_dataset(old_row, uri, schema=old_schema, mode="create")
    ensure_table(uri)  # what a step does first: adds the missing columns, all null
    assert set(NEW_COLUMNS) <= set(lance.dataset(uri).schema.names)
    row = {
        "video_id": "new1",
        "shard": "b",
        "status": "ok",
        "source_size_changes": 0,
        "source_sizes": [{"width": 2, "height": 2, "frames": 1}],
        "bitrate": 1000,
    }
    commit_shard(uri, "b", write_shard_fragments([row], uri))
    rows = {r["video_id"]: r for r in lance.dataset(uri).to_table(columns=["video_id", *NEW_COLUMNS]).to_pylist()}
    assert rows["old1"]["source_sizes"] is None
    assert rows["old1"]["bitrate"] is None
    assert rows["new1"]["source_sizes"] == [{"width": 2, "height": 2, "frames": 1}]
    assert rows["new1"]["bitrate"] == 1000


def test_a_video_row_is_typed_where_it_is_made():
    from kinetics_assets.table import VideoRow

    with pytest.raises(TypeError, match=r"VideoRow of v1: width='wide' does not fit column width \(int32\)"):
        VideoRow(video_id="v1", shard="s", status="ok", width="wide")
    with pytest.raises(TypeError, match="video must be bytes"):
        VideoRow(video_id="v1", shard="s", status="ok", video="not bytes")
    row = VideoRow(video_id="v1", shard="s", status="failed", error_type="decode", source_sizes=[])
    assert row.error_type == "decode"
