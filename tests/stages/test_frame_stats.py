"""frame_stats, the stage with no model, on the one shard loop: black, frozen and moving clips in a
real Lance table, measured in this process."""

from __future__ import annotations

from datetime import UTC, datetime

import lance
import numpy as np
import pytest

from kinetics_assets.media.frame_stats import FrameStatsConfig
from kinetics_assets.qa.queries import QUERIES, run_qa
from kinetics_assets.qa.views import connect
from kinetics_assets.stages import InProcessExecutor, run_column_stage
from kinetics_assets.stages.frame_stats import FrameStatsStage
from kinetics_assets.steps.failures import ShardFailure
from kinetics_assets.table import commit_shard, write_shard_fragments
from tests.harness.exotic_clips import exotic_clip_bytes, frame_pattern

SECONDS, FPS = 3, 10


def _clip(pattern) -> bytes:
    return exotic_clip_bytes(
        container_format="mp4", width=64, height=48, fps=FPS, frames=SECONDS * FPS, pattern=pattern
    )


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    texture = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    return {
        "black": _clip(lambda _i, w, h: np.zeros((h, w, 3), np.uint8)),
        "frozen": _clip(lambda _i, _w, _h: texture),
        "moving": _clip(frame_pattern),
        "corrupt": b"\x00not a video\x00" * 64,
    }


@pytest.fixture
def uri(tmp_path, clips) -> str:
    uri = str(tmp_path / "t.lance")
    rows = [
        {
            "video_id": f"s1-{name}",
            "shard": "s1",
            "status": "ok",
            "video": data,
            "duration_s": float(SECONDS),
            "processed_at": datetime.now(UTC),
        }
        for name, data in clips.items()
    ]
    commit_shard(uri, "s1", write_shard_fragments(rows, uri))
    return uri


def _run(uri: str, stage: FrameStatsStage, shards=("s1",)) -> dict:
    results = run_column_stage(
        stage, list(shards), lance_uri=uri, storage_options=None, executor=InProcessExecutor(), log=lambda _: None
    )
    return {r.shard: r for r in results}


def test_black_frozen_and_moving_clips_are_told_apart_and_a_bad_one_fails_alone(uri):
    result = _run(uri, FrameStatsStage())["s1"]
    rows = {r.video_id: r for r in result.rows}
    assert result.counts == {"ok": 3, "failed": 1}
    assert rows["s1-corrupt"].error.startswith("s1-corrupt: ")
    black, frozen, moving = rows["s1-black"], rows["s1-frozen"], rows["s1-moving"]
    assert len(black.luma) == len(black.motion) == SECONDS
    assert max(black.luma) < 16
    assert black.black_s == pytest.approx(SECONDS, abs=0.5)
    assert frozen.frozen_s >= SECONDS - 0.5
    assert frozen.black_s == 0
    assert moving.frozen_s < 1
    assert min(m for m in moving.motion if m is not None) > 0.5
    # The failed video fails the check that every ok video has statistics; the others are consistent.
    assert not result.checks["every_ok_video_has_frame_stats"].passed
    assert result.checks["frame_stats_consistent"].passed
    stored = lance.dataset(uri).to_table(columns=["video_id", "frame_stats_settings", "frame_stats_black_s"])
    assert set(stored["frame_stats_settings"].to_pylist()) == {FrameStatsStage().settings_key()}


def test_same_settings_skip_other_settings_redo_and_a_missing_shard_fails_alone(uri):
    with_corrupt_dropped = lance.dataset(uri)
    with_corrupt_dropped.delete("video_id = 's1-corrupt'")
    first = _run(uri, FrameStatsStage())["s1"]
    assert not first.unchanged
    assert all(v.passed for v in first.checks.values())
    version = lance.dataset(uri).version
    again = _run(uri, FrameStatsStage(), shards=("s1", "s9"))
    assert again["s1"].unchanged
    assert lance.dataset(uri).version == version
    assert isinstance(again["s9"], ShardFailure)
    assert "'*frame_stats'" in again["s9"].error
    assert not _run(uri, FrameStatsStage(config=FrameStatsConfig(fps=2.0)))["s1"].unchanged


def test_the_qa_query_lists_black_and_frozen_clips(uri):
    _run(uri, FrameStatsStage())
    con = connect(lance.dataset(uri))
    found = con.sql(QUERIES["black_or_frozen"]).to_arrow_table().to_pylist()
    assert {r["video_id"] for r in found} == {"s1-black", "s1-frozen"}
    assert run_qa(con)["black_or_frozen"].num_rows == 2


def test_the_log_says_how_far_each_shard_is(uri):
    lines: list[str] = []
    list(
        run_column_stage(
            FrameStatsStage(),
            ["s1"],
            lance_uri=uri,
            storage_options=None,
            executor=InProcessExecutor(),
            log=lines.append,
        )
    )
    assert "shard s1: frame_stats done for 4/4 videos" in lines


def test_a_bad_setting_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"FrameStatsConfig.fps must be > 0, got 0"):
        FrameStatsConfig(fps=0)
    with pytest.raises(ValueError, match=r"FrameStatsConfig.black_luma must be in \[0, 255\], got 300"):
        FrameStatsConfig(black_luma=300)
