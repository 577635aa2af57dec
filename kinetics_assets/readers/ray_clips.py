"""Clips of the video table as a Ray Dataset: row descriptors in, decoded clips (or frames) out.

The driver reads only the scalar index of a pinned table version (table_clips.ClipIndex) and
turns it into descriptors; Ray workers open the table themselves (once per worker process and
version) and read each clip with table_clips.read_clip. `ray.data.read_lance` is not used: it would scan the blob
column as blob descriptors, not bytes, and a read task per fragment gives no control over which
rows and clips are decoded.

A row that cannot be read does not fail the dataset: it comes out with `ok=False`, its `error`
(the cause, naming the video) and empty arrays, so a pipeline can count, log or drop failures
(`ds.filter(lambda r: r["ok"])`).
"""

from __future__ import annotations

import functools
import json
import os
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pyarrow as pa
import ray

from kinetics_assets.media.sampling import ClipSampling
from kinetics_assets.readers.table_clips import (
    BadVideoError,
    ClipFilters,
    ClipIndex,
    DepthServed,
    IndexedVideo,
    TableClip,
    TableTranscript,
    item_rng,
    read_clip,
)
from kinetics_assets.table import open_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    import lance

RowPer = Literal["clip", "frame"]


def read_clips(
    uri: str,
    *,
    sampling: ClipSampling = ClipSampling(),
    shards: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    status: str | None = "ok",
    where: str | None = None,
    drop_duplicates: bool = False,
    storage_options: dict[str, str] | None = None,
    version: int | None = None,
    with_depth: DepthServed = "auto",
    with_transcript: bool = False,
    per: RowPer = "clip",
    short_side: int | None = None,
    classes: Sequence[str] | Literal["auto"] = "auto",
    seed: int = 0,
    epoch: int = 0,
    concurrency: int | None = None,
    clips_per_block: int = 4,
) -> ray.data.Dataset:
    """A lazy Ray Dataset of clips: one row per clip (`per="clip"`) or per decoded frame (`"frame"`).

    Clip rows: video uint8 [T,H,W,3], timestamps float64 [T], frame_indices int64 [T], label (class
    index, -1 unknown), label_name, video_id, shard, clip, ok, error; with depth also depth float32
    [T,H,W] and depth_timestamps. Frame rows carry one frame (`frame` [H,W,3], `frame_index`,
    `timestamp`, `depth` [H,W]) and the same identifying columns. With `with_transcript` both carry
    transcript, transcript_status, transcript_language and transcript_segments (a list of
    {start, end, text} on the video's clock, those overlapping the clip), as LanceClipDataset items
    do; a failed row has them empty. The same (seed, epoch) gives the same clips as
    LanceClipDataset with that seed and epoch. `drop_duplicates` leaves out near-duplicates as
    `ClipFilters.drop_duplicates` says.
    """
    if per not in get_args(RowPer):
        raise ValueError(f"per={per!r} is not one of {', '.join(get_args(RowPer))}")
    if clips_per_block < 1:
        raise ValueError(f"clips_per_block must be >= 1, got {clips_per_block}")
    index = ClipIndex.build(
        uri,
        storage_options=storage_options,
        version=version,
        filters=ClipFilters(
            shards=tuple(shards) if shards is not None else None,
            labels=tuple(labels) if labels is not None else None,
            status=status,
            where=where,
            drop_duplicates=drop_duplicates,
        ),
        with_depth=with_depth,
        with_transcript=with_transcript,
        classes=classes,
    )
    descriptors = clip_descriptors(index, sampling.clips_per_video)
    context = {
        "uri": uri,
        "version": index.version,
        "storage_options": json.dumps(storage_options or {}, sort_keys=True),
        "sampling": sampling,
        "short_side": short_side,
        "with_depth": index.with_depth,
        "with_transcript": index.with_transcript,
        "seed": seed,
        "epoch": epoch,
    }
    # Small descriptor blocks: one block is decoded by one task, so this is what spreads the work.
    blocks = [descriptors.slice(i, clips_per_block) for i in range(0, descriptors.num_rows, clips_per_block)]
    ds = ray.data.from_arrow(blocks or [descriptors])
    if per == "clip":
        return ds.map(_clip_row, fn_kwargs=context, concurrency=concurrency)
    return ds.flat_map(_frame_rows, fn_kwargs=context, concurrency=concurrency)


def clip_descriptors(index: ClipIndex, clips_per_video: int = 1) -> pa.Table:
    """One small row per clip: where the video is in the pinned version and which clip of it."""
    rows = index.rows
    slots = np.repeat(np.arange(rows.num_rows), clips_per_video)
    clips = np.tile(np.arange(clips_per_video), rows.num_rows)
    picked = rows.take(pa.array(slots, pa.int64()))
    return pa.table(
        {
            "index": pa.array(slots * clips_per_video + clips, pa.int64()),
            "clip": pa.array(clips, pa.int64()),
            "position": picked["position"],
            "video_id": picked["video_id"],
            "label": picked["label_index"],
            "label_name": picked["label"],
            "shard": picked["shard"],
            "status": picked["status"],
            "frames": picked["frames"],
        }
    )


@functools.lru_cache(maxsize=8)
def _open_cached(uri: str, version: int, storage_options: str, _pid: int) -> lance.LanceDataset:
    """One open table per worker process and version (the pid, a cache key only, keys out forked copies)."""
    return open_table(uri, json.loads(storage_options) or None, version=version)


def _read(row: dict[str, Any], ctx: dict[str, Any]) -> tuple[TableClip | None, str | None]:
    frames = row["frames"]
    entry = IndexedVideo(
        position=int(row["position"]),
        video_id=row["video_id"],
        status=row["status"],
        frames=None if frames is None else int(frames),
    )
    try:
        ds = _open_cached(ctx["uri"], ctx["version"], ctx["storage_options"], os.getpid())
        raw = read_clip(
            ds,
            entry,
            ctx["sampling"],
            rng=item_rng(ctx["seed"], ctx["epoch"], int(row["index"])),
            clip=int(row["clip"]),
            short_side=ctx["short_side"],
            with_depth=ctx["with_depth"],
            with_transcript=ctx["with_transcript"],
        )
    except BadVideoError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - opening the table etc.: still a per-row failure, never a crash
        return None, f"video {row['video_id']} (row {row['position']}): {type(exc).__name__}: {exc}"
    return raw, None


def _identity(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("video_id", "shard", "clip", "label", "label_name")}


def _transcript(raw: TableClip | None) -> dict[str, Any]:
    t = raw.transcript if raw is not None and raw.transcript is not None else TableTranscript("", "", "", [])
    return {
        "transcript": t.text,
        "transcript_status": t.status,
        "transcript_language": t.language,
        "transcript_segments": t.segments,
    }


def _clip_row(row: dict[str, Any], **ctx: Any) -> dict[str, Any]:
    raw, error = _read(row, ctx)
    out = _identity(row)
    if raw is None:
        out.update(
            video=np.zeros((0, 0, 0, 3), np.uint8),
            timestamps=np.zeros(0, np.float64),
            frame_indices=np.zeros(0, np.int64),
        )
        if ctx["with_depth"]:
            out.update(depth=np.zeros((0, 0, 0), np.float32), depth_timestamps=np.zeros(0, np.float64))
    else:
        out.update(video=raw.video, timestamps=raw.timestamps, frame_indices=raw.frame_indices)
        if ctx["with_depth"]:
            out.update(depth=raw.depth, depth_timestamps=raw.depth_timestamps)
    if ctx["with_transcript"]:
        out.update(_transcript(raw))
    out["ok"] = raw is not None
    out["error"] = error
    return out


def _frame_rows(row: dict[str, Any], **ctx: Any) -> list[dict[str, Any]]:
    raw, error = _read(row, ctx)
    base = _identity(row)
    if ctx["with_transcript"]:
        base.update(_transcript(raw))
    if raw is None:
        failed = dict(
            base, frame=np.zeros((0, 0, 3), np.uint8), frame_index=-1, timestamp=float("nan"), ok=False, error=error
        )
        if ctx["with_depth"]:
            failed.update(depth=np.zeros((0, 0), np.float32), depth_timestamp=float("nan"))
        return [failed]
    out = []
    for t in range(len(raw.video)):
        item = dict(
            base,
            frame=raw.video[t],
            frame_index=int(raw.frame_indices[t]),
            timestamp=float(raw.timestamps[t]),
            ok=True,
            error=None,
        )
        if raw.depth is not None and raw.depth_timestamps is not None:  # read when the dataset serves depth
            item.update(depth=raw.depth[t], depth_timestamp=float(raw.depth_timestamps[t]))
        out.append(item)
    return out
