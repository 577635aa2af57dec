"""Transcript columns: added to an existing table on first use, written per shard in one commit that
rewrites only those columns, idempotent, beside depth and beside other shards' commits."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import lance

from kinetics_assets.table import (
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
    from pathlib import Path


def _publish(uri: str, shard: str, ids: list[str]) -> None:
    rows = [{"video_id": i, "shard": shard, "status": "ok", "video": b"bytes of " + i.encode()} for i in ids]
    commit_shard(uri, shard, write_shard_fragments(rows, uri))


def _transcript(video_id: str, text: str = "hello there", status: str = "ok") -> dict:
    return {
        "video_id": video_id,
        "transcript_status": status,
        "transcript_error": None,
        "transcript_text": text if status == "ok" else "",
        "transcript_language": "en" if status == "ok" else None,
        "transcript_language_probability": 0.9 if status == "ok" else None,
        "transcript_segments": [{"start": 0.5, "end": 1.25, "text": text}] if status == "ok" else [],
        "transcript_model": "tests/tiny-whisper",
        "transcript_model_revision": "local",
        "transcript_pretrained": False,
        "transcript_processed_at": datetime.now(UTC),
    }


def _video_files(uri: str) -> set[str]:
    return {f.metadata.files[0].path for f in lance.dataset(uri).get_fragments()}


def test_columns_are_added_once_and_written_without_rewriting_the_videos(tmp_path: Path):
    uri = str(tmp_path / "t.lance")
    _publish(uri, "a", ["a1", "a2"])
    ensure_transcript_columns(uri)
    version = open_table(uri).version
    ensure_transcript_columns(uri)  # already there: no new version
    ds = open_table(uri)
    assert ds.version == version
    assert {f.name for f in TRANSCRIPT_FIELDS} <= set(ds.schema.names)
    assert ds.to_table(columns=["transcript_status"])["transcript_status"].null_count == 2
    videos = _video_files(uri)

    new_version = write_transcripts(uri, [_transcript("a1"), _transcript("a2", status="no_speech")])
    ds = open_table(uri)
    assert ds.version == new_version == version + 1
    assert videos <= _video_files(uri)  # the video data files are all still referenced
    rows = {
        r["video_id"]: r
        for r in ds.to_table(
            columns=["video_id", "video", "transcript_status", "transcript_text", "transcript_segments"]
        ).to_pylist()
    }
    assert rows["a1"]["transcript_segments"] == [{"start": 0.5, "end": 1.25, "text": "hello there"}]
    assert rows["a2"]["transcript_status"] == "no_speech"
    assert rows["a2"]["transcript_text"] == ""
    assert ds.take_blobs("video", ids=[0])[0].read() == b"bytes of a1"


def test_a_rewrite_is_idempotent_and_never_adds_rows(tmp_path: Path):
    uri = str(tmp_path / "t.lance")
    _publish(uri, "a", ["a1"])
    ensure_transcript_columns(uri)
    write_transcripts(uri, [_transcript("a1", "first")])
    write_transcripts(uri, [_transcript("a1", "second"), _transcript("not-in-table")])
    table = open_table(uri).to_table(columns=["video_id", "transcript_text"])
    assert table.to_pylist() == [{"video_id": "a1", "transcript_text": "second"}]


def test_transcripts_and_depth_live_side_by_side(tmp_path: Path):
    uri = str(tmp_path / "t.lance")
    _publish(uri, "a", ["a1"])
    ensure_depth_columns(uri)
    ensure_transcript_columns(uri)
    write_depth(uri, [{"video_id": "a1", "depth_status": "ok", "depth_frames": 3}])
    write_transcripts(uri, [_transcript("a1")])
    row = open_table(uri).to_table(columns=["depth_status", "depth_frames", "transcript_status"]).to_pylist()[0]
    assert row == {"depth_status": "ok", "depth_frames": 3, "transcript_status": "ok"}


def test_two_shards_write_at_once_and_each_keeps_its_own(tmp_path: Path):
    uri = str(tmp_path / "t.lance")
    shards = {s: [f"{s}{i}" for i in range(3)] for s in ("a", "b", "c")}
    for shard, ids in shards.items():
        _publish(uri, shard, ids)
    ensure_transcript_columns(uri)
    errors: list[BaseException] = []

    def write(ids: list[str]) -> None:
        try:
            write_transcripts(uri, [_transcript(i, f"text of {i}") for i in ids])
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(ids,)) for ids in shards.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = open_table(uri).to_table(columns=["video_id", "transcript_text"]).to_pylist()
    assert sorted((r["video_id"], r["transcript_text"]) for r in rows) == sorted(
        (i, f"text of {i}") for ids in shards.values() for i in ids
    )


def test_a_contended_write_is_named_by_its_group_and_shard(tmp_path: Path):
    from kinetics_assets.table.columns import _columns_label

    uri = str(tmp_path / "t.lance")
    _publish(uri, "a", ["a1"])
    assert _columns_label(uri, ["a1"], "transcripts", None) == "transcripts of shard a (1 videos)"
    assert _columns_label(uri, ["zz"], "depth", None) == "depth of video zz (1 videos)"
