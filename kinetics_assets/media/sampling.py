"""Which frames to take from a video, decided from its frame timestamps alone (no decoding).

Two policies over one clock: `FrameSampling` picks the frames the depth step computes over a whole
video; `ClipSampling` cuts a training clip (a window of frames) out of it. Both return indices into
the timestamps, which are in presentation order: index i is the i-th frame of a full decode, so the
same index addresses the RGB video and a depth video stored for every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast, get_args

import numpy as np

SamplingPolicy = Literal["every", "fps", "count"]
ClipStart = Literal["random", "uniform", "centre"]

# Timestamps read from a container carry rounding (a 1/90000 s time base and float seconds): a tick
# this close to a frame counts as landing on it.
_TICK_TOLERANCE_S = 1e-6


def fps_ticks(first: float, count: int, fps: float) -> np.ndarray:
    """`count` ticks of an `fps` clock, the first at `first` (s)."""
    return first + np.arange(count) / fps


def frames_at_or_after(timestamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the first frame at or after each time; `len(timestamps)` past the last frame."""
    return np.searchsorted(timestamps, times - _TICK_TOLERANCE_S)


def nearest_frames(timestamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame nearest each time (ties go to the earlier frame); outside the video, the
    first or last frame.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    after = np.clip(np.searchsorted(ts, t, side="left"), 0, len(ts) - 1)
    before = np.clip(after - 1, 0, len(ts) - 1)
    take_before = np.abs(t - ts[before]) <= np.abs(ts[after] - t) + 1e-9
    return np.where(take_before, before, after).astype(np.int64)


def _check_positive(owner: str, name: str, value: float | None) -> None:
    if value is None or not value > 0:
        raise ValueError(f"{owner}.{name} must be > 0, got {value!r}")


def _check_one_of(owner: str, name: str, value: str, choices: object) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{owner}.{name}={value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class FrameSampling:
    """`every` frame (aligned 1:1 with the stored video), a target `fps`, or a fixed `count` per video.

    `describe()` is stored with the depth and compared on re-runs, so its text is part of the table.
    """

    policy: SamplingPolicy = "every"
    fps: float | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        _check_one_of("FrameSampling", "policy", self.policy, SamplingPolicy)
        if self.policy == "fps":
            _check_positive("FrameSampling", "fps", self.fps)
        if self.policy == "count":
            _check_positive("FrameSampling", "count", self.count)

    def describe(self) -> str:
        if self.policy == "fps":
            return f"fps={self.fps:g}"
        if self.policy == "count":
            return f"count={self.count}"
        return "every"

    @classmethod
    def parse(cls, text: str) -> FrameSampling:
        """`every`, `fps=2`, or `count=16`."""
        name, _, value = text.partition("=")
        name = name.strip()
        try:
            if name == "fps":
                return cls("fps", fps=float(value))
            if name == "count":
                return cls("count", count=int(value))
        except ValueError:
            raise ValueError(f"frame sampling {text!r}: {name} needs a number") from None
        return cls(cast("SamplingPolicy", name))  # checked by __post_init__

    def indices(self, timestamps: np.ndarray) -> np.ndarray:
        """Which frames (indices into `timestamps`, presentation order) this policy keeps."""
        n = len(timestamps)
        if n == 0 or self.policy == "every":
            return np.arange(n)
        if self.policy == "count":
            if self.count is None:
                raise AssertionError("__post_init__ requires a count for this policy")
            if self.count >= n:
                return np.arange(n)
            # Centres of `count` equal stretches: spread over the whole clip, no frame twice.
            return np.floor((np.arange(self.count) + 0.5) * n / self.count).astype(np.int64)
        # fps: the first frame at or after each tick of the target clock.
        if self.fps is None:
            raise AssertionError("__post_init__ requires an fps for this policy")
        start, end = float(timestamps[0]), float(timestamps[-1])
        ticks = fps_ticks(start, math.floor((end - start) * self.fps + 1e-9) + 1, self.fps)
        picked = frames_at_or_after(timestamps, ticks)
        return np.unique(picked[picked < n])


@dataclass(frozen=True)
class ClipSampling:
    """How a training clip is cut from a video.

    `num_frames` frames `stride` frames apart, or at a target `fps` (the frame nearest each tick of
    the clock; `stride` must then stay 1). A video shorter than the clip is padded by repeating the
    clip's last frame (not by looping: time never runs backwards inside a clip). `start`: "random"
    (needs an rng; reproducible when the rng is seeded per item), "centre" (the middle of the valid
    starts) or "uniform" (`clips_per_video` starts spread evenly from the first to the last valid
    start; with one clip per video it is the centre).
    """

    num_frames: int = 16
    stride: int = 1
    fps: float | None = None
    start: ClipStart = "random"
    clips_per_video: int = 1

    def __post_init__(self) -> None:
        _check_positive("ClipSampling", "num_frames", self.num_frames)
        _check_positive("ClipSampling", "stride", self.stride)
        if self.fps is not None:
            _check_positive("ClipSampling", "fps", self.fps)
            if self.stride != 1:
                raise ValueError("ClipSampling: give either stride or fps, not both")
        _check_one_of("ClipSampling", "start", self.start, ClipStart)
        _check_positive("ClipSampling", "clips_per_video", self.clips_per_video)

    def indices(self, timestamps: np.ndarray, *, rng: np.random.Generator | None = None, clip: int = 0) -> np.ndarray:
        """Frame indices (into `timestamps`, presentation order) of clip number `clip` of a video."""
        ts = np.asarray(timestamps, dtype=np.float64)
        n = len(ts)
        if n == 0:
            raise ValueError("cannot sample a clip from a video with no frames")
        if not 0 <= clip < self.clips_per_video:
            raise IndexError(f"clip {clip} out of range for clips_per_video={self.clips_per_video}")
        starts = self._valid_starts(ts)
        if self.start == "random":
            if rng is None:
                raise ValueError("ClipSampling(start='random') needs an rng")
            first = int(starts[rng.integers(len(starts))])
        elif self.start == "uniform" and self.clips_per_video > 1:
            first = int(starts[int(clip * (len(starts) - 1) / (self.clips_per_video - 1) + 0.5)])
        else:
            first = int(starts[(len(starts) - 1) // 2])
        if self.fps is None:
            picked = first + np.arange(self.num_frames, dtype=np.int64) * self.stride
            inside = picked < n
            # Pad with the clip's last in-range frame.
            return np.where(inside, picked, picked[inside][-1])
        return nearest_frames(ts, fps_ticks(ts[first], self.num_frames, self.fps))

    def _valid_starts(self, ts: np.ndarray) -> np.ndarray:
        """Start frames whose whole clip fits in the video; just frame 0 when none does (padding)."""
        n = len(ts)
        if self.fps is None:
            span = (self.num_frames - 1) * self.stride + 1
            starts = np.arange(max(n - span + 1, 0))
        else:
            duration = (self.num_frames - 1) / self.fps
            starts = np.flatnonzero(ts + duration <= ts[-1] + _TICK_TOLERANCE_S)
        return starts if len(starts) else np.zeros(1, dtype=np.int64)
