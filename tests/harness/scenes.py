"""Generated near-duplicates: a camera panning over a smooth random world (one world per seed), and
the same pan re-encoded, scaled, cropped, shifted in time or cut to a segment, all encoded in memory
with PyAV, so fingerprint and dedup tests need no media files and no subprocess.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.harness.exotic_clips import exotic_clip_bytes

FPS = 10
PAN_PX_PER_S = 16
"""How far the camera moves over the world each second, in world pixels (the view is 160 wide: a slow pan)."""
VIEW = (160, 120)


MAX_SECONDS = 30


def _world(seed: int) -> np.ndarray:
    """A smooth random RGB picture wide enough for MAX_SECONDS of the pan, the same for every clip of it."""
    rng = np.random.default_rng(seed)
    width = VIEW[0] + PAN_PX_PER_S * (MAX_SECONDS + 1)
    coarse = rng.integers(0, 255, (VIEW[1] // 24, width // 24, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, VIEW[1]), Image.Resampling.BICUBIC))


def scene_clip(
    seed: int,
    *,
    seconds: float = 4.0,
    start_s: float = 0.0,
    size: tuple[int, int] = (96, 72),
    crop: float = 0.0,
    crf: int = 23,
) -> bytes:
    """`seconds` of the pan over world `seed` from `start_s` on, seen at `size` (width, height) with
    `crop` of each side's length cut away (half from each edge), H.264 at `crf`.
    """
    if start_s + seconds > MAX_SECONDS:
        raise ValueError(f"a pan lasts at most {MAX_SECONDS} s")
    world = _world(seed)
    view_w, view_h = VIEW
    cut_x, cut_y = round(view_w * crop / 2), round(view_h * crop / 2)

    def pattern(i: int, width: int, height: int) -> np.ndarray:
        x = round((start_s + i / FPS) * PAN_PX_PER_S)
        view = world[cut_y : view_h - cut_y, x + cut_x : x + view_w - cut_x]
        return np.asarray(Image.fromarray(view).resize((width, height), Image.Resampling.BILINEAR))

    return exotic_clip_bytes(
        container_format="mp4",
        width=size[0],
        height=size[1],
        fps=FPS,
        frames=round(seconds * FPS),
        pattern=pattern,
        options={"crf": str(crf)},
    )


def flat_clip(*, seconds: float = 3.0, grey: int = 0) -> bytes:
    """A uniform picture: nothing a perceptual hash can compare."""
    return exotic_clip_bytes(
        container_format="mp4",
        width=96,
        height=72,
        fps=FPS,
        frames=round(seconds * FPS),
        pattern=lambda _i, w, h: np.full((h, w, 3), grey, np.uint8),
    )
