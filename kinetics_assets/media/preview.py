"""A frame beside its depth, as one picture: what the depth step's preview and the QA contact sheet
show, drawn one way with one colour map so the two read alike.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

NO_DEPTH_GREY = 128  # the panel beside a frame that has no depth


_FLAT_SPAN = 1e-12  # a disparity range this narrow is a flat map


def colorize(depth: np.ndarray) -> np.ndarray:
    """A disparity map [H,W] as uint8 RGB [H,W,3]: blue (far) through green to red (near), normalised
    per frame over its finite values; a flat map takes the middle colour.
    """
    finite = depth[np.isfinite(depth)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    t = (
        np.full(depth.shape, 0.5, dtype=np.float32)
        if hi - lo < _FLAT_SPAN
        else np.clip(np.nan_to_num((depth - lo) / (hi - lo)), 0, 1)
    )
    r = np.clip(1.5 - np.abs(4 * t - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * t - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * t - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def frame_beside_depth(frame: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
    """uint8 RGB [H,2W,3]: the frame on the left, its colourised depth on the right (scaled to the
    frame's size when stored at another), or a grey panel when there is no depth.
    """
    height, width = frame.shape[:2]
    if depth is None:
        right = np.full_like(frame, NO_DEPTH_GREY)
    else:
        right = colorize(depth)
        if right.shape[:2] != (height, width):
            right = np.asarray(Image.fromarray(right).resize((width, height), Image.Resampling.BILINEAR))
    return np.concatenate([frame, right], axis=1)


def png(picture: np.ndarray) -> bytes:
    """An RGB picture [H,W,3] as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()
