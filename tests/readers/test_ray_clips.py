"""read_clips on the session's local Ray: decoded clips and frames, and failures as rows.

Ray Data needs the `ray[data]` extra (pandas); without it the module is skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

from kinetics_assets.media.sampling import ClipSampling
from kinetics_assets.readers.ray_clips import read_clips
from kinetics_assets.readers.torch_dataset import LanceClipDataset
from tests.readers.test_video_dataset import DEPTH_STEP, HEIGHT, SPECS, WIDTH, bad_rows, build_table, read_code

pytestmark = pytest.mark.e2e

S1 = [s for s in SPECS if s.shard == "s1"]  # vid_a (60 frames), vid_b (80), vid_c (10); depth for every frame
VIDEO_NO = {s.video_id: s.video_no for s in S1}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("ray_clips") / "videos.lance")
    build_table(uri, S1, extra=bad_rows)
    return uri


def _check_frames(video: np.ndarray, frame_indices, video_id: str) -> None:
    for frame, index in zip(video, frame_indices, strict=True):
        assert read_code(frame) == (int(index), VIDEO_NO[video_id])


def test_clip_rows_match_the_torch_dataset(ray_local, table):
    sampling = ClipSampling(num_frames=6, stride=2, start="random", clips_per_video=2)
    rows = read_clips(table, sampling=sampling, shards=["s1"], seed=4, epoch=1).take_all()
    assert len(rows) == 6
    assert all(r["ok"] and r["error"] is None for r in rows)
    reference = LanceClipDataset(table, sampling=sampling, shards=["s1"], seed=4)
    reference.set_epoch(1)
    expected = {(reference[i]["video_id"], reference[i]["clip"]): reference[i] for i in range(len(reference))}
    assert {(r["video_id"], r["clip"]) for r in rows} == set(expected)
    for row in rows:
        video = row["video"]
        assert video.dtype == np.uint8
        assert video.shape == (6, HEIGHT, WIDTH, 3)
        _check_frames(video, row["frame_indices"], row["video_id"])
        same = expected[(row["video_id"], row["clip"])]
        np.testing.assert_array_equal(row["frame_indices"], same["frame_indices"].numpy())
        np.testing.assert_array_equal(video, same["video"].permute(0, 2, 3, 1).numpy())
        assert row["label"] == same["label"]
        assert row["label_name"] == reference.classes[row["label"]]
        # Depth of exactly these frames (value = frame index, +DEPTH_STEP on the right half).
        depth = row["depth"]
        assert depth.dtype == np.float32
        assert depth.shape == (6, HEIGHT, WIDTH)
        np.testing.assert_allclose(depth[:, 0, 0], row["frame_indices"], atol=0.01)
        np.testing.assert_allclose(depth[:, 0, -1], row["frame_indices"] + DEPTH_STEP, atol=0.01)
        np.testing.assert_allclose(row["depth_timestamps"], row["timestamps"], atol=1e-4)


def test_failures_are_rows_not_exceptions(ray_local, table):
    ds = read_clips(table, sampling=ClipSampling(num_frames=4, start="centre"), status=None, short_side=48)
    rows = ds.take_all()
    by_id = {r["video_id"]: r for r in rows}
    assert set(by_id) == {"vid_a", "vid_b", "vid_c", "bad_garbage", "bad_truncated", "bad_failed"}
    failed = {v: r["error"] for v, r in by_id.items() if not r["ok"]}
    assert set(failed) == {"bad_garbage", "bad_truncated", "bad_failed"}
    assert "Invalid data" in failed["bad_garbage"]
    assert "the table says 60" in failed["bad_truncated"]
    assert "status is 'failed'" in failed["bad_failed"]
    for video_id, error in failed.items():
        assert error.startswith(f"video {video_id} (row ")
        assert by_id[video_id]["video"].size == 0
    for video_id in ("vid_a", "vid_b", "vid_c"):
        row = by_id[video_id]
        assert row["ok"]
        assert row["video"].shape == (4, 48, 80, 3)
        _check_frames(row["video"], row["frame_indices"], video_id)
    # Mixed depth presence (the bad rows have none): "auto" leaves depth out for all.
    assert "depth" not in rows[0]
    assert ds.filter(lambda r: r["ok"]).count() == 3


def test_frame_rows(ray_local, table):
    ds = read_clips(table, sampling=ClipSampling(num_frames=3, stride=5, start="centre"), shards=["s1"], per="frame")
    rows = ds.take_all()
    assert len(rows) == 9
    for row in rows:
        assert row["ok"]
        assert row["frame"].shape == (HEIGHT, WIDTH, 3)
        assert read_code(row["frame"]) == (row["frame_index"], VIDEO_NO[row["video_id"]])
        assert row["depth"].shape == (HEIGHT, WIDTH)
        assert abs(row["depth"][0, 0] - row["frame_index"]) < 0.01
        assert abs(row["timestamp"] - row["frame_index"] / 25) < 1e-3
    per_video = {v: sorted(r["frame_index"] for r in rows if r["video_id"] == v) for v in VIDEO_NO}
    assert per_video == {"vid_a": [24, 29, 34], "vid_b": [34, 39, 44], "vid_c": [0, 5, 5]}
    with pytest.raises(ValueError, match="per='video'"):
        read_clips(table, per="video")
