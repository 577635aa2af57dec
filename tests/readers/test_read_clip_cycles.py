"""A reader's clip (video, aligned depth, and a row that fails) leaves no PyAV reference cycles, so
a DataLoader worker needs no collection after each clip (see tests/media/test_av_cycles.py)."""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

import numpy as np
import pytest

from kinetics_assets.media.decode import frame_timestamps
from kinetics_assets.media.depth_codec import encode_depth
from kinetics_assets.media.sampling import ClipSampling
from kinetics_assets.readers.table_clips import BadVideoError, ClipIndex, read_clip
from kinetics_assets.table import commit_shard, ensure_depth_columns, write_depth, write_shard_fragments
from tests.harness.exotic_clips import exotic_clip_bytes

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def index(tmp_path: Path) -> ClipIndex:
    uri = str(tmp_path / "t.lance")
    video = exotic_clip_bytes(container_format="mp4", width=96, height=64, fps=10, frames=12)
    rows = [
        {"video_id": "good", "shard": "s", "status": "ok", "video": video, "frames": 12},
        {"video_id": "short", "shard": "s", "status": "ok", "video": video[: len(video) // 2], "frames": 12},
    ]
    commit_shard(uri, "s", write_shard_fragments(rows, uri))
    ensure_depth_columns(uri)
    times = frame_timestamps(video)
    encoded = encode_depth(np.random.default_rng(0).random((12, 64, 96), dtype=np.float32), times)
    depth = {
        "depth": encoded.data,
        "depth_status": "ok",
        "depth_lo": encoded.lo,
        "depth_hi": encoded.hi,
        "depth_frames": 12,
        "depth_timestamps": times.tolist(),
        "depth_sampling": "every",
    }
    write_depth(uri, [{"video_id": "good", **depth}, {"video_id": "short", **depth}])
    return ClipIndex.build(uri, with_depth=True)


def test_reading_clips_leaves_no_cycles(index: ClipIndex) -> None:
    ds = index.open()
    by_id = {index.row(i).video_id: index.row(i) for i in range(len(index))}
    sampling = ClipSampling(num_frames=4, start="centre")

    def read(video_id: str) -> None:
        if video_id == "short":
            with pytest.raises(BadVideoError, match="video short"):
                read_clip(ds, by_id[video_id], sampling, with_depth=True)
        else:
            clip = read_clip(ds, by_id[video_id], sampling, with_depth=True)
            assert clip.depth is not None
            assert clip.depth.shape == (4, 64, 96)

    for video_id in ("good", "short"):
        read(video_id)  # the first read may build caches that live on
        gc.collect()
        gc.disable()
        try:
            read(video_id)
            assert gc.collect(1) == 0, video_id
        finally:
            gc.enable()
