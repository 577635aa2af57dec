"""Small generated video clips for tests (the generator itself lives in kinetics_assets.ops.sample)."""

from __future__ import annotations

from pathlib import Path

from kinetics_assets.ops.sample import frame_pattern, make_clip

__all__ = ["clip_bytes", "frame_pattern", "make_clip"]


def clip_bytes(tmp_dir: Path, name: str = "clip.mp4", **kwargs) -> bytes:
    """Convenience: encode a clip into `tmp_dir` and return its bytes."""
    return make_clip(Path(tmp_dir) / name, **kwargs).read_bytes()
