"""The `depth_maps` step for many shards: ok videos -> depth on Ray -> the table's depth columns.

Plain orchestration (no Dagster). Depth is written for each shard's ok rows in one commit that adds
only depth data files; a re-run overwrites the same columns, so it is idempotent.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import lance
import numpy as np

from kinetics_assets.media.depth_codec import DepthEncoding, decode_depth
from kinetics_assets.depth.model import DepthModelConfig
from kinetics_assets.media.frames import FrameSampling, decode_frames, frame_timestamps
from kinetics_assets.distributed.depth import DepthJob, DepthRun, RayDepthOptions
from kinetics_assets.steps.progress import Progress
from kinetics_assets.steps.raw import ShardFailure
from kinetics_assets.steps.shard_state import read_shard_state
from kinetics_assets.table.video_table import (
    ensure_depth_columns,
    open_table,
    sql_literal,
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
    """From the start of the step to this shard's commit."""
    model_load_s: float  # part of `seconds`: actor start and model load, once per step
    bytes_total: int
    version: int
    model: dict
    unchanged: bool = False
    """Depth was already there with the same settings; nothing was written."""
    checks: dict[str, tuple[bool, dict]] = field(default_factory=dict)
    preview_png: bytes | None = None


def depth_step(shard: str, **kwargs) -> DepthStepResult:
    """Depth for one shard's ok videos, in one commit. Keyword arguments are those of `depth_shards`."""
    kwargs.setdefault("skip_committed", False)
    (result,) = depth_shards([shard], raise_errors=True, **kwargs)
    return result


_DEPTH_STATE = ["video_id", "shard", "processed_at", "depth_status", "depth_sampling", "depth_encoding",
                "depth_model", "depth_processed_at"]


def depth_shards(
    shards: Sequence[str],
    *,
    lance_uri: str,
    storage_options: dict | None,
    model: DepthModelConfig,
    sampling: FrameSampling = FrameSampling(),
    encoding: DepthEncoding = DepthEncoding(),
    options: RayDepthOptions = RayDepthOptions(),
    pretrained: bool = True,
    skip_committed: bool = True,
    log: Callable[[str], None] = print,
    raise_errors: bool = False,
) -> Iterator[DepthStepResult | ShardFailure]:
    """Depth for the ok videos of many shards through one stream (model actors started once), each
    shard written in one commit as soon as its last video is done; results in completion order.

    A shard with no rows in the table is a ShardFailure (`raise_errors` raises UpstreamMissing). With
    `skip_committed`, a shard whose ok videos all have depth made after them with the same model,
    sampling and codec is not done again (its result has `unchanged` set)."""
    started = time.monotonic()
    state = read_shard_state(shards, lance_uri=lance_uri, storage_options=storage_options, columns=_DEPTH_STATE,
                             asset="depth_maps", add_columns=ensure_depth_columns, raise_errors=raise_errors)
    yield from state.missing
    if state.ds is None:
        return
    ds, by_shard = state.ds, state.rows
    shards = list(by_shard)
    settings = (sampling.describe(), encoding.codec, model.model_id)
    todo: dict[str, int] = {}
    for shard in shards:
        rows = by_shard[shard]
        if skip_committed and rows and all(_has_depth_from(r, settings) for r in rows):
            log(f"shard {shard}: depth already made with these settings for all {len(rows)} ok videos; skipped")
            yield _result(ds, shard, sampling, rows=[], started=time.monotonic(), run=None, pretrained=pretrained,
                          unchanged=True)
        elif not rows:
            yield _result(ds, shard, sampling, rows=[], started=started, run=None, pretrained=pretrained)
        else:
            todo[shard] = len(rows)
    jobs = [DepthJob(r["video_id"], r["_rowid"], r["shard"]) for s in todo for r in by_shard[s]]
    if not jobs:
        return
    log(f"depth for {len(jobs)} ok videos of {len(todo)} shard(s) at table version {ds.version}")
    run = DepthRun(jobs, uri=lance_uri, version=ds.version, storage_options=storage_options, model=model,
                   sampling=sampling, encoding=encoding, options=options)
    shard_of = {job.video_id: job.shard for job in jobs}
    done: dict[str, list[dict]] = {s: [] for s in todo}
    progress = Progress(log, "depth", "video", len(jobs))
    for row in run:
        shard = shard_of[row["video_id"]]
        row["depth_pretrained"] = pretrained
        done[shard].append(row)
        if row["depth_status"] != "ok":
            log(f"shard {shard}: depth failed: {row['depth_error']}")
        progress.advance(frames=row.get("depth_frames") or 0)
        if len(done[shard]) % 10 == 0 or len(done[shard]) == todo[shard]:
            log(f"shard {shard}: depth done for {len(done[shard])}/{todo[shard]} videos")
        if len(done[shard]) < todo[shard]:
            continue
        try:
            yield _result(ds, shard, sampling, rows=done.pop(shard), started=started, run=run, pretrained=pretrained,
                          lance_uri=lance_uri, storage_options=storage_options)
        except Exception as exc:  # this shard's commit failed; the others go on
            if raise_errors:
                raise
            yield ShardFailure(shard, f"{type(exc).__name__}: shard {shard}: {exc}")


def _has_depth_from(row: dict, settings: tuple[str, str, str]) -> bool:
    made = row["depth_processed_at"]
    return (row["depth_status"] == "ok" and (row["depth_sampling"], row["depth_encoding"], row["depth_model"]) == settings
            and made is not None and row["processed_at"] is not None and made >= row["processed_at"])


def _result(ds: lance.LanceDataset, shard: str, sampling: FrameSampling, *, rows: list[dict], started: float,
            run: DepthRun | None, pretrained: bool, unchanged: bool = False, lance_uri: str = "",
            storage_options: dict | None = None) -> DepthStepResult:
    """Commit one shard's depth rows (if any), then check what was committed."""
    version = write_depth(lance_uri, rows, storage_options) if rows else ds.version
    committed = open_table(lance_uri, storage_options, version=version) if rows else ds
    failures = [{"video_id": r["video_id"], "depth_error": r["depth_error"]} for r in rows if r["depth_status"] != "ok"]
    result = DepthStepResult(
        shard=shard,
        videos=len(rows),
        ok=len(rows) - len(failures),
        failed=len(failures),
        failures=failures,
        frames=sum(r.get("depth_frames") or 0 for r in rows),
        seconds=time.monotonic() - started,
        model_load_s=run.model_load_s if run else 0.0,
        bytes_total=sum(len(r.get("depth") or b"") for r in rows),
        version=version,
        model=run.model if run else {},
        unchanged=unchanged,
    )
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
