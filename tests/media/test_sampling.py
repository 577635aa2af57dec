"""Frame sampling from timestamps alone: the depth step's policies and training clips' windows."""

from __future__ import annotations

import numpy as np
import pytest

from kinetics_assets.media.sampling import ClipSampling, FrameSampling, nearest_frames

# --------------------------------------------------------------------------------------------------
# FrameSampling: the depth step's policy, whose text is stored in the table


@pytest.mark.parametrize("text", ["every", "fps=2", "fps=0.5", "fps=29.97", "count=16"])
def test_frame_sampling_text_round_trips(text):
    assert FrameSampling.parse(text).describe() == text


def test_frame_sampling_text_is_fixed():
    # The depth skip rule compares these strings with the ones stored next to the depth.
    assert FrameSampling().describe() == "every"
    assert FrameSampling("fps", fps=2.0).describe() == "fps=2"
    assert FrameSampling.parse(" fps=2.50").describe() == "fps=2.5"
    assert FrameSampling("count", count=16).describe() == "count=16"


def test_frame_sampling_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="fps needs a number"):
        FrameSampling.parse("fps=fast")
    with pytest.raises(ValueError, match="not one of every, fps, count"):
        FrameSampling.parse("half")
    with pytest.raises(ValueError, match="fps must be > 0"):
        FrameSampling("fps", fps=0.0)
    with pytest.raises(ValueError, match="count must be > 0"):
        FrameSampling("count")


def test_frame_sampling_indices():
    ts = np.arange(50) / 25  # 2 s at 25 fps
    assert FrameSampling().indices(ts).tolist() == list(range(50))
    # 5 fps: the first frame at or after each 0.2 s tick.
    assert FrameSampling.parse("fps=5").indices(ts).tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    # Ticks between frames take the next frame; a tick past the last frame takes none.
    assert FrameSampling.parse("fps=3").indices(np.array([0.0, 0.3, 0.4, 0.7])).tolist() == [0, 2, 3]
    # count: the centres of equal stretches; more than the video has gives every frame once.
    assert FrameSampling.parse("count=4").indices(ts).tolist() == [6, 18, 31, 43]
    assert FrameSampling.parse("count=80").indices(ts).tolist() == list(range(50))
    assert FrameSampling.parse("fps=5").indices(np.zeros(0)).tolist() == []


# --------------------------------------------------------------------------------------------------
# ClipSampling: indices only


def test_stride_clip_indices_and_padding():
    ts = np.arange(40) / 25
    s = ClipSampling(num_frames=4, stride=3, start="centre")
    # Valid starts 0..30, centre 15.
    assert s.indices(ts).tolist() == [15, 18, 21, 24]
    rng = np.random.default_rng(0)
    for _ in range(50):
        got = ClipSampling(4, 3, start="random").indices(ts, rng=rng)
        assert np.all(np.diff(got) == 3)
        assert got[0] >= 0
        assert got[-1] < 40
    # 10 frames, 16 wanted: frames 0..9, then the last one repeated.
    assert ClipSampling(16, start="random").indices(np.arange(10) / 25, rng=rng).tolist() == list(range(10)) + [9] * 6
    assert ClipSampling(4, stride=4, start="centre").indices(np.arange(10) / 25).tolist() == [0, 4, 8, 8]
    with pytest.raises(ValueError, match="needs an rng"):
        ClipSampling(start="random").indices(ts)
    with pytest.raises(ValueError, match="either stride or fps"):
        ClipSampling(stride=2, fps=5.0)
    with pytest.raises(ValueError, match="no frames"):
        ClipSampling(start="centre").indices(np.zeros(0))


def test_uniform_clips_span_the_video_and_fps_sampling_follows_time():
    ts = np.arange(100) / 25
    s = ClipSampling(num_frames=8, stride=2, start="uniform", clips_per_video=3)
    firsts = [int(s.indices(ts, clip=k)[0]) for k in range(3)]
    assert firsts == [0, 43, 85]  # valid starts 0..85
    # 30 fps video, 10 fps clip: every third frame; VFR timestamps: the nearest frame to each tick.
    got = ClipSampling(num_frames=5, fps=10, start="centre").indices(np.arange(90) / 30)
    assert np.all(np.diff(got) == 3)
    vfr = np.array([0.0, 0.05, 0.31, 0.33, 0.52, 0.9, 1.0])
    assert ClipSampling(num_frames=4, fps=4, start="uniform").indices(vfr).tolist() == [0, 2, 4, 5]
    assert nearest_frames(vfr, np.array([-1.0, 0.025, 0.0251, 5.0])).tolist() == [0, 0, 1, 6]


def test_clip_sampling_rejects_bad_settings():
    with pytest.raises(ValueError, match="num_frames must be > 0"):
        ClipSampling(num_frames=0)
    with pytest.raises(ValueError, match="fps must be > 0"):
        ClipSampling(fps=-1.0)
    with pytest.raises(ValueError, match="start='middle' is not one of random, uniform, centre"):
        ClipSampling(start="middle")
    with pytest.raises(IndexError, match="clip 2 out of range"):
        ClipSampling(start="centre", clips_per_video=2).indices(np.arange(10) / 25, clip=2)
