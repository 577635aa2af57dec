"""The `depth_maps` step for one shard: ok videos -> depth on Ray -> the table's depth columns.

Plain orchestration (no Dagster). Depth is written for the shard's ok rows in one commit that adds
only depth data files; a re-run overwrites the same columns, so it is idempotent.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import lance
import numpy as np

from kinetics_assets.depth_codec import DepthEncoding, decode_depth
from kinetics_assets.depth_model import DepthModelConfig
from kinetics_assets.frames import FrameSampling, decode_frames, frame_timestamps
from kinetics_assets.ray_depth import DepthJob, RayDepthOptions, compute_depth
from kinetics_assets.transcode_step import UpstreamMissing
from kinetics_assets.video_table import (
    ensure_depth_columns,
    open_table,
    sql_literal,
    table_exists,
    write_depth,
)


@dataclass
class DepthStepResult:
    shard: str
    videos: int
    ok: int
    failed: int
    failures: list[dict]
    frames: int
    seconds: float
    model_load_s: float  # part of `seconds`: actor start and model load, once per step
    bytes_total: int
    version: int
    model: dict
    checks: dict[str, tuple[bool, dict]] = field(default_factory=dict)
    preview_png: bytes | None = None


def depth_step(
    shard: str,
    *,
    lance_uri: str,
    storage_options: dict | None,
    model: DepthModelConfig,
    sampling: FrameSampling = FrameSampling(),
    encoding: DepthEncoding = DepthEncoding(),
    options: RayDepthOptions = RayDepthOptions(),
    pretrained: bool = True,
    log: Callable[[str], None] = print,
) -> DepthStepResult:
    where = f"shard = {sql_literal(shard)}"
    if not table_exists(lance_uri, storage_options) or open_table(lance_uri, storage_options).count_rows(where) == 0:
        raise UpstreamMissing(
            f"shard {shard}: no rows in {lance_uri}; materialize transcoded_videos for this partition "
            "first (or select '*depth_maps' to include everything upstream)"
        )
    ensure_depth_columns(lance_uri, storage_options)
    ds = open_table(lance_uri, storage_options)
    ok = ds.to_table(columns=["video_id"], filter=f"{where} AND status = 'ok'", with_row_id=True)
    jobs = [DepthJob(v, r) for v, r in zip(ok["video_id"].to_pylist(), ok["_rowid"].to_pylist())]
    log(f"shard {shard}: depth for {len(jobs)} ok videos at table version {ds.version}")
    done = [0]

    def on_video(row: dict) -> None:
        done[0] += 1
        if row["depth_status"] != "ok":
            log(f"shard {shard}: depth failed: {row['depth_error']}")
        if done[0] % 10 == 0 or done[0] == len(jobs):
            log(f"shard {shard}: depth done for {done[0]}/{len(jobs)} videos")

    outcome = compute_depth(
        jobs,
        uri=lance_uri,
        version=ds.version,
        storage_options=storage_options,
        model=model,
        sampling=sampling,
        encoding=encoding,
        options=options,
        on_video=on_video,
    )
    for row in outcome.rows:
        row["depth_pretrained"] = pretrained
    version = write_depth(lance_uri, outcome.rows, storage_options) if outcome.rows else ds.version
    failures = [{"video_id": r["video_id"], "depth_error": r["depth_error"]} for r in outcome.rows if r["depth_status"] != "ok"]
    result = DepthStepResult(
        shard=shard,
        videos=len(jobs),
        ok=len(jobs) - len(failures),
        failed=len(failures),
        failures=failures,
        frames=outcome.frames,
        seconds=outcome.seconds,
        model_load_s=outcome.model_load_s,
        bytes_total=sum(len(r.get("depth") or b"") for r in outcome.rows),
        version=version,
        model=outcome.model,
    )
    committed = open_table(lance_uri, storage_options, version=version)
    result.checks = check_shard_depth(committed, shard, sampling)
    result.preview_png = preview(committed, shard)
    return result


def _ok_rows_with_depth(ds: lance.LanceDataset, shard: str) -> list[dict]:
    columns = ["video_id", "width", "height", "depth", "depth_status", "depth_lo", "depth_hi", "depth_frames",
               "depth_width", "depth_height", "depth_timestamps"]
    return ds.to_table(columns=columns, filter=f"shard = {sql_literal(shard)} AND status = 'ok'", with_row_id=True).to_pylist()


def check_shard_depth(ds: lance.LanceDataset, shard: str, sampling: FrameSampling) -> dict[str, tuple[bool, dict]]:
    """Read the committed depth back and check it against the videos it came from."""
    rows = _ok_rows_with_depth(ds, shard)
    without = [r["video_id"] for r in rows if r["depth_status"] != "ok" or not r["depth"]]
    count_problems, value_problems, size_problems = [], [], []
    blobs = ds.take_blobs("video", ids=[r["_rowid"] for r in rows]) if rows else []
    for row, blob in zip(rows, blobs):
        if row["video_id"] in without:
            continue
        video_id = row["video_id"]
        expected = len(sampling.indices(frame_timestamps(blob.read())))
        depth = decode_depth(row["depth"], row["depth_lo"], row["depth_hi"])
        if not (len(depth) == row["depth_frames"] == expected == len(row["depth_timestamps"])):
            count_problems.append(f"{video_id}: {len(depth)} decoded, {row['depth_frames']} stored, {expected} sampled")
        tolerance = 1e-3 * max(abs(row["depth_hi"] - row["depth_lo"]), 1e-6)
        if not np.isfinite(depth).all() or depth.min() < row["depth_lo"] - tolerance or depth.max() > row["depth_hi"] + tolerance:
            value_problems.append(f"{video_id}: values outside [{row['depth_lo']}, {row['depth_hi']}] or not finite")
        if depth.shape[1:] != (row["height"], row["width"]) or (row["depth_height"], row["depth_width"]) != (row["height"], row["width"]):
            size_problems.append(f"{video_id}: depth {depth.shape[2]}x{depth.shape[1]}, video {row['width']}x{row['height']}")
    return {
        "every_ok_video_has_depth": (not without, {"ok_videos": len(rows), "without_depth": without[:20]}),
        "depth_frame_count": (not count_problems, {"problems": count_problems[:20]}),
        "depth_values_in_range": (not value_problems, {"problems": value_problems[:20]}),
        "depth_size_matches_video": (not size_problems, {"problems": size_problems[:20]}),
    }


def colorize(depth: np.ndarray) -> np.ndarray:
    """A disparity map as RGB (near = warm), normalised per frame; flat maps come out mid-grey."""
    lo, hi = float(np.nanmin(depth)), float(np.nanmax(depth))
    t = np.zeros_like(depth) + 0.5 if hi - lo < 1e-12 else (depth - lo) / (hi - lo)
    r = np.clip(1.5 - np.abs(4 * t - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * t - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * t - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def preview(ds: lance.LanceDataset, shard: str) -> bytes | None:
    """PNG of one frame of the shard's first video with depth, beside its colourised depth."""
    from PIL import Image

    rows = [r for r in _ok_rows_with_depth(ds, shard) if r["depth_status"] == "ok" and r["depth"]]
    if not rows:
        return None
    row = rows[0]
    middle = row["depth_frames"] // 2
    depth = decode_depth(row["depth"], row["depth_lo"], row["depth_hi"], frame_indices=[middle])[0]
    # The depth frame's own timestamp finds the matching RGB frame whatever the sampling was.
    data = ds.take_blobs("video", ids=[row["_rowid"]])[0].read()
    times = frame_timestamps(data)
    index = int(np.argmin(np.abs(times - row["depth_timestamps"][middle])))
    frames, _ = decode_frames(data, np.array([index]))
    picture = np.concatenate([frames[0], colorize(depth)], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()
