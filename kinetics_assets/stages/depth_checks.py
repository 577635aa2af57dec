"""The depth stage's checks: the committed depth read back and judged against its videos."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from kinetics_assets.media.decode import frame_timestamps
from kinetics_assets.media.depth_codec import decode_depth
from kinetics_assets.steps.checks import (
    DEPTH_FRAME_COUNT,
    DEPTH_SIZE_MATCHES_VIDEO,
    DEPTH_VALUES_IN_RANGE,
    EVERY_OK_VIDEO_HAS_DEPTH,
    Verdict,
    Verdicts,
)
from kinetics_assets.table import shard_ok_rows

if TYPE_CHECKING:
    import lance

    from kinetics_assets.media.sampling import FrameSampling

_COLUMNS = [
    "video_id",
    "width",
    "height",
    "depth",
    "depth_status",
    "depth_lo",
    "depth_hi",
    "depth_frames",
    "depth_width",
    "depth_height",
    "depth_timestamps",
]


def check_shard_depth(ds: lance.LanceDataset, shard: str, sampling: FrameSampling) -> Verdicts:
    """Read the committed depth back and check it against the videos it came from."""
    rows = shard_ok_rows(ds, shard, _COLUMNS, with_row_id=True)
    without = [r["video_id"] for r in rows if r["depth_status"] != "ok" or not r["depth"]]
    count_problems, value_problems, size_problems = [], [], []
    blobs = ds.take_blobs("video", ids=[r["_rowid"] for r in rows]) if rows else []
    for row, blob in zip(rows, blobs, strict=True):
        if row["video_id"] in without:
            continue
        video_id = row["video_id"]
        if blob is None:  # a null blob: no video to count the frames of
            count_problems.append(f"{video_id}: the row has no video bytes")
            continue
        expected = len(sampling.indices(frame_timestamps(blob.read())))
        depth = decode_depth(row["depth"], row["depth_lo"], row["depth_hi"])
        if not (len(depth) == row["depth_frames"] == expected == len(row["depth_timestamps"])):
            count_problems.append(f"{video_id}: {len(depth)} decoded, {row['depth_frames']} stored, {expected} sampled")
        if not _in_range(depth, row):
            value_problems.append(f"{video_id}: values outside [{row['depth_lo']}, {row['depth_hi']}] or not finite")
        if depth.shape[1:] != (row["height"], row["width"]) or (row["depth_height"], row["depth_width"]) != (
            row["height"],
            row["width"],
        ):
            size_problems.append(
                f"{video_id}: depth {depth.shape[2]}x{depth.shape[1]}, video {row['width']}x{row['height']}"
            )
    return {
        EVERY_OK_VIDEO_HAS_DEPTH.name: Verdict(not without, {"ok_videos": len(rows), "without_depth": without[:20]}),
        DEPTH_FRAME_COUNT.name: Verdict(not count_problems, {"problems": count_problems[:20]}),
        DEPTH_VALUES_IN_RANGE.name: Verdict(not value_problems, {"problems": value_problems[:20]}),
        DEPTH_SIZE_MATCHES_VIDEO.name: Verdict(not size_problems, {"problems": size_problems[:20]}),
    }


def _in_range(depth: np.ndarray, row: dict[str, Any]) -> bool:
    tolerance = 1e-3 * max(abs(row["depth_hi"] - row["depth_lo"]), 1e-6)
    return bool(
        np.isfinite(depth).all()
        and depth.min() >= row["depth_lo"] - tolerance
        and depth.max() <= row["depth_hi"] + tolerance
    )
