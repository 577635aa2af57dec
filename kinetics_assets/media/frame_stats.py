"""Per-second brightness (mean BT.601 luma, 0-255) and motion (mean absolute luma change from the
previous sampled frame); a sampled frame stands for 1/fps seconds of black or frozen picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
WHITE = 255.0


@dataclass(frozen=True)
class FrameStatsConfig:
    fps: float = 4.0
    """Frames sampled per second of video."""
    black_luma: float = 16.0
    frozen_motion: float = 0.5

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"FrameStatsConfig.fps must be > 0, got {self.fps}")
        if not 0.0 <= self.black_luma <= WHITE:
            raise ValueError(f"FrameStatsConfig.black_luma must be in [0, 255], got {self.black_luma}")
        if not self.frozen_motion >= 0:
            raise ValueError(f"FrameStatsConfig.frozen_motion must be >= 0, got {self.frozen_motion}")


@dataclass(frozen=True, kw_only=True)
class FrameStats:
    luma: list[float]
    motion: list[float | None]  # None: a second with one sampled frame, the first
    black_s: float
    frozen_s: float


def measure_frames(frames: np.ndarray, times: np.ndarray, config: FrameStatsConfig) -> FrameStats:
    """`frames` [N, H, W, 3] uint8 RGB sampled at `config.fps`, `times` their seconds."""
    if len(frames) == 0:
        raise ValueError("no frames to measure")
    luma = (frames.astype(np.float32) @ _LUMA).reshape(len(frames), -1)
    brightness = luma.mean(axis=1)
    change = np.abs(np.diff(luma, axis=0)).mean(axis=1)
    second = np.floor(times - times[0]).astype(int)
    seconds = range(int(second.max()) + 1)
    return FrameStats(
        luma=[float(brightness[second == s].mean()) for s in seconds],
        motion=[float(change[second[1:] == s].mean()) if (second[1:] == s).any() else None for s in seconds],
        black_s=float((brightness < config.black_luma).sum() / config.fps),
        frozen_s=float((change < config.frozen_motion).sum() / config.fps),
    )
