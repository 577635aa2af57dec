"""Frames beside their depth read from a real table: the depth preview and the contact sheet.

The clips spell their frame index in their pixels and the depth of frame i is i (see
tests/readers/test_video_dataset.py), so a sample shows whether its frame and depth belong together.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kinetics_assets.media.preview import frame_beside_depth
from kinetics_assets.qa.previews import contact_sheet_png, contact_sheet_samples, shard_preview
from kinetics_assets.table import open_table
from tests.readers.test_video_dataset import DEPTH_STEP, VideoSpec, bad_rows, build_table, read_code

SPECS = [
    VideoSpec("vid_a", "s1", "abseiling", 30, 25, 1),  # depth for every frame
    VideoSpec("vid_b", "s2", "air drumming", 50, 25, 2, depth="fps=5"),
    VideoSpec("vid_c", "s2", None, 20, 25, 3, depth=None),
]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("previews") / "videos.lance")
    build_table(uri, SPECS, extra=bad_rows)
    return open_table(uri)


def test_samples_pair_each_frame_with_its_own_depth(table):
    samples = contact_sheet_samples(table, ["vid_b", "vid_c", "bad_garbage", "vid_a", "no_such_video"])
    assert [s.video_id for s in samples] == ["vid_b", "vid_c", "bad_garbage", "vid_a"]
    by_id = {s.video_id: s for s in samples}
    for video_id in ("vid_a", "vid_b"):
        sample = by_id[video_id]
        index, _ = read_code(sample.frame)
        assert sample.depth[0, 0] == pytest.approx(index, abs=0.01)
        assert sample.depth[0, -1] == pytest.approx(index + DEPTH_STEP, abs=0.01)
    assert read_code(by_id["vid_a"].frame)[0] == 15  # the middle of 30 frames
    assert read_code(by_id["vid_b"].frame)[0] == 25  # the middle of 10 depth frames at 5 fps: 1.0 s
    assert by_id["vid_c"].depth is None
    assert read_code(by_id["vid_c"].frame) == (10, 3)
    garbage = by_id["bad_garbage"]
    assert garbage.frame is None
    assert garbage.error.split(":")[0].endswith("Error")  # the cause, by type
    sheet = Image.open(io.BytesIO(contact_sheet_png(samples)))
    assert sheet.format == "PNG"
    assert sheet.width > 400
    assert sheet.height > 200


def test_shard_preview_is_the_first_video_with_depth(table):
    picture = np.asarray(Image.open(io.BytesIO(shard_preview(table, "s2"))).convert("RGB"))
    (sample,) = contact_sheet_samples(table, ["vid_b"])
    np.testing.assert_array_equal(picture, frame_beside_depth(sample.frame, sample.depth))
    assert shard_preview(table, "bad") is None  # ok rows there have no depth
