"""Decoding stored videos: the seek-and-decode path against a full decode, on self-describing frames."""

from __future__ import annotations

import numpy as np
import pytest

from kinetics_assets.media.decode import (
    decode_clip,
    decode_frames,
    frame_timestamps,
    index_frames,
    open_video,
    video_stream,
)
from kinetics_assets.media.transcode import TranscodeConfig
from tests.readers.test_video_dataset import VideoSpec, read_code, transcoded_row


@pytest.mark.parametrize("preset", ["ultrafast", "veryfast"])
def test_seek_decode_gives_the_same_pixels_as_a_full_decode(preset):
    # veryfast (the production preset) uses B-frames: decode order differs from presentation order.
    row = transcoded_row(VideoSpec("vid_b", "s1", None, 80, 25, 2), config=TranscodeConfig(preset=preset))
    video = row["video"]  # 80 frames, keyframe every 25
    full, full_times = decode_frames(video)
    for indices in ([30, 31, 32, 33], [0, 1, 2], [70, 79], [5, 60, 26, 26, 5], list(range(24, 52, 3)), [79] * 3):
        frames, times = decode_clip(video, indices)
        np.testing.assert_array_equal(frames, full[indices])
        np.testing.assert_allclose(times, full_times[indices], atol=1e-6)
        assert [read_code(f)[0] for f in frames] == indices
    with pytest.raises(IndexError, match="frame index 80 out of range for a video of 80 frames"):
        decode_clip(video, [80])
    small, _ = decode_clip(video, [40], size=(80, 48))
    assert small.shape == (1, 48, 80, 3)
    assert read_code(small[0]) == (40, 2)


def test_the_frame_index_agrees_with_a_full_decode():
    video = transcoded_row(VideoSpec("vid_a", "s1", None, 30, 25, 1))["video"]
    _, full_times = decode_frames(video)
    np.testing.assert_allclose(frame_timestamps(video), full_times, atol=1e-6)
    with open_video(memoryview(video)) as container:
        index = index_frames(container, video_stream(container))
    assert len(index) == 30
    assert index.keyframes[0] == index.pts[0]
    # Every frame's nearest keyframe at or before it is a keyframe, and not after the frame.
    for pts in index.pts:
        key = index.keyframe_before(pts)
        assert key in index.keyframes
        assert key <= pts
