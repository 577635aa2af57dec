"""The frame-beside-depth picture shared by the depth step's preview and the QA contact sheet."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from kinetics_assets.media.preview import NO_DEPTH_GREY, colorize, frame_beside_depth, png


def test_colorize_maps_near_to_warm_and_flat_to_the_middle():
    depth = np.tile(np.linspace(1.0, 9.0, 5, dtype=np.float32), (2, 1))  # disparity: larger is nearer
    rgb = colorize(depth)
    assert rgb.shape == (2, 5, 3)
    assert rgb.dtype == np.uint8
    far, near = rgb[0, 0].astype(int), rgb[0, -1].astype(int)
    assert far[2] > far[0]
    assert near[0] > near[2]  # far is blue, near is red
    assert (colorize(np.full((3, 3), 4.2, np.float32)) == [127, 255, 127]).all()
    # Values that are not finite do not take the scale with them.
    spotty = depth.copy()
    spotty[1, 1] = np.nan
    np.testing.assert_array_equal(colorize(spotty)[0], rgb[0])


def test_frame_beside_depth_and_its_png():
    frame = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    depth = np.arange(48, dtype=np.float32).reshape(6, 8)
    picture = frame_beside_depth(frame, depth)
    assert picture.shape == (6, 16, 3)
    np.testing.assert_array_equal(picture[:, :8], frame)
    np.testing.assert_array_equal(picture[:, 8:], colorize(depth))
    # Depth stored at another size is scaled to the frame's.
    assert frame_beside_depth(frame, np.ones((3, 4), np.float32)).shape == (6, 16, 3)
    assert (frame_beside_depth(frame, None)[:, 8:] == NO_DEPTH_GREY).all()
    decoded = np.asarray(Image.open(io.BytesIO(png(picture))).convert("RGB"))
    np.testing.assert_array_equal(decoded, picture)
