"""Frames out of a stored video: which frames to sample, and decoding them with their timestamps.

Frame indices are in presentation order over the video's full decode, which is also the order the
transcoder wrote them in, so index i of the RGB video and index i of its depth video are one frame.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np


@dataclass(frozen=True)
class FrameSampling:
    """`every` frame (aligned 1:1 with the stored video), a target `fps`, or a fixed `count` per video."""

    policy: str = "every"
    fps: float | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if self.policy not in ("every", "fps", "count"):
            raise ValueError(f"frame sampling policy {self.policy!r} is not one of every, fps, count")
        if self.policy == "fps" and not (self.fps and self.fps > 0):
            raise ValueError("frame sampling policy 'fps' needs fps > 0")
        if self.policy == "count" and not (self.count and self.count > 0):
            raise ValueError("frame sampling policy 'count' needs count > 0")

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
        return cls(name)

    def indices(self, timestamps: np.ndarray) -> np.ndarray:
        """Which frames (indices into `timestamps`, presentation order) this policy keeps."""
        n = len(timestamps)
        if n == 0 or self.policy == "every":
            return np.arange(n)
        if self.policy == "count":
            if self.count >= n:
                return np.arange(n)
            # Centres of `count` equal stretches: spread over the whole clip, no frame twice.
            return np.floor((np.arange(self.count) + 0.5) * n / self.count).astype(np.int64)
        # fps: the first frame at or after each tick of the target clock.
        start, end = float(timestamps[0]), float(timestamps[-1])
        ticks = start + np.arange(math.floor((end - start) * self.fps + 1e-9) + 1) / self.fps
        picked = np.searchsorted(timestamps, ticks - 1e-6)
        return np.unique(picked[picked < n])


def decode_frames(
    video: bytes | BinaryIO, indices: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames uint8 [N,H,W,3] and their timestamps (s) for the chosen indices (all when None).

    Decodes forward once; frames not chosen are skipped before colour conversion, which is where
    most of the per-frame cost is.
    """
    wanted = None if indices is None else set(int(i) for i in indices)
    frames: list[np.ndarray] = []
    times: list[float] = []
    with av.open(_readable(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if wanted is not None and index not in wanted:
                continue
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.time) if frame.time is not None else float("nan"))
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0)
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def frame_timestamps(video: bytes | BinaryIO) -> np.ndarray:
    """Presentation timestamps (s) of every frame, from the packets, without decoding pictures."""
    with av.open(_readable(video)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        return np.asarray(pts, dtype=np.float64) * float(stream.time_base)


def _readable(video: bytes | BinaryIO) -> BinaryIO:
    return io.BytesIO(video) if isinstance(video, (bytes, bytearray, memoryview)) else video
