"""clip_fingerprints, the stage with no model, on the one shard loop over a real Lance table."""

from __future__ import annotations

from datetime import UTC, datetime

import lance
import pytest

from kinetics_assets.media.fingerprint import FingerprintConfig, align, from_stored
from kinetics_assets.stages import InProcessExecutor, run_column_stage
from kinetics_assets.stages.fingerprints import FingerprintStage
from kinetics_assets.table import commit_shard, write_shard_fragments
from tests.harness.scenes import flat_clip, scene_clip


@pytest.fixture
def uri(tmp_path) -> str:
    uri = str(tmp_path / "t.lance")
    clips = {
        "pan": (scene_clip(1, seconds=4.0), 4.0),
        "pan-copy": (scene_clip(1, seconds=4.0, size=(160, 120), crf=35), 4.0),
        "black": (flat_clip(seconds=3.0), 3.0),
        "corrupt": (b"\x00not a video\x00" * 64, 4.0),
    }
    rows = [
        {
            "video_id": f"s1-{name}",
            "shard": "s1",
            "status": "ok",
            "video": data,
            "duration_s": seconds,
            "processed_at": datetime.now(UTC),
        }
        for name, (data, seconds) in clips.items()
    ]
    commit_shard(uri, "s1", write_shard_fragments(rows, uri))
    return uri


def _run(uri: str, stage: FingerprintStage) -> dict:
    results = run_column_stage(
        stage, ["s1"], lance_uri=uri, storage_options=None, executor=InProcessExecutor(), log=lambda _: None
    )
    return {r.shard: r for r in results}


def test_each_second_is_hashed_a_bad_video_fails_alone_and_copies_align(uri):
    result = _run(uri, FingerprintStage())["s1"]
    assert result.counts == {"ok": 3, "failed": 1}
    rows = {r.video_id: r for r in result.rows}
    assert rows["s1-corrupt"].error.startswith("s1-corrupt: ")
    assert len(rows["s1-pan"].hashes) == 4
    assert rows["s1-black"].hashes == [0, 0, 0]
    assert not result.checks["every_ok_video_has_fingerprint"].passed
    consistent = result.checks["fingerprint_consistent"]
    assert consistent.passed
    assert consistent.details["all_flat"] == ["s1-black"]
    stored = lance.dataset(uri).to_table(columns=["video_id", "fingerprint", "fingerprint_fps", "fingerprint_settings"])
    by_id = {r["video_id"]: r for r in stored.to_pylist()}
    assert by_id["s1-pan"]["fingerprint"] == rows["s1-pan"].hashes
    assert by_id["s1-pan"]["fingerprint_fps"] == 1.0
    # Stored signed (DuckDB's filters reach Lance through Substrait, which has no unsigned types).
    assert str(stored.schema.field("fingerprint").type) == "list<item: int64>"
    assert from_stored(by_id["s1-pan"]["fingerprint"]).tolist() == from_stored(rows["s1-pan"].hashes).tolist()
    assert {r["fingerprint_settings"] for r in by_id.values()} == {FingerprintStage().settings_key()}
    found = align(
        from_stored(by_id["s1-pan"]["fingerprint"]), from_stored(by_id["s1-pan-copy"]["fingerprint"]), max_bits=12
    )
    assert found is not None
    assert (found.offset, found.matched) == (0, 4)


def test_same_settings_skip_other_settings_redo(uri):
    lance.dataset(uri).delete("video_id = 's1-corrupt'")
    first = _run(uri, FingerprintStage())["s1"]
    assert all(v.passed for v in first.checks.values())
    version = lance.dataset(uri).version
    assert _run(uri, FingerprintStage())["s1"].unchanged
    assert lance.dataset(uri).version == version
    again = _run(uri, FingerprintStage(config=FingerprintConfig(fps=2.0, frames_per_hash=2)))["s1"]
    assert not again.unchanged
    assert len({r.video_id: r for r in again.rows}["s1-pan"].hashes) == 8
