"""Frames beside their depth, read from the table: a shard's preview (the depth step's metadata) and
the contact sheet of many videos (the QA report), drawn by `media.preview`.

A sample is a video's middle depth frame and the RGB frame it was computed from, found by the depth
frame's own timestamp so that it matches whatever the depth sampling was; a video without depth
shows its middle frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.depth_codec import decode_depth
from kinetics_assets.media.preview import frame_beside_depth, png
from kinetics_assets.qa.render import figure_png
from kinetics_assets.table import sql_literal

if TYPE_CHECKING:
    import lance

_DEPTH_COLUMNS = ("depth", "depth_status", "depth_lo", "depth_hi", "depth_frames", "depth_timestamps")


@dataclass
class FrameSample:
    """One video's frame and the depth of that frame (None without depth). `error` says why the
    video could not be read; such a sample is kept so that a sheet shows it rather than hiding it.
    """

    video_id: str
    label: str | None
    frame: np.ndarray | None = None  # uint8 [H,W,3]
    depth: np.ndarray | None = None  # float32 [H,W]
    error: str | None = None


def shard_preview(ds: lance.LanceDataset, shard: str) -> bytes | None:
    """PNG of one frame of the shard's first ok video with depth, beside its colourised depth."""
    where = f"shard = {sql_literal(shard)} AND status = 'ok' AND depth_status = 'ok'"
    rows = [r for r in _sample_rows(ds, where) if r["depth"]]
    if not rows:
        return None
    data = _blob_bytes(ds.take_blobs("video", ids=[rows[0]["_rowid"]])[0], rows[0]["video_id"])
    sample = _sample(rows[0], data)
    return None if sample.frame is None else png(frame_beside_depth(sample.frame, sample.depth))


def contact_sheet_samples(ds: lance.LanceDataset, video_ids: list[str]) -> list[FrameSample]:
    """A sample per video id, in the order given (the first row of a duplicated id)."""
    if not video_ids:
        return []
    rows = _sample_rows(ds, "video_id IN (" + ", ".join(sql_literal(v) for v in video_ids) + ")")
    order = {v: i for i, v in enumerate(video_ids)}
    rows.sort(key=lambda r: order.get(r["video_id"], len(order)))
    first: dict[str, dict] = {}
    for r in rows:
        first.setdefault(r["video_id"], r)
    rows = list(first.values())
    blobs = ds.take_blobs("video", ids=[r["_rowid"] for r in rows])
    samples = []
    for row, blob in zip(rows, blobs, strict=True):
        try:
            samples.append(_sample(row, _blob_bytes(blob, row["video_id"])))
        except Exception as exc:  # noqa: BLE001 - one unreadable video must not sink the sheet
            samples.append(FrameSample(row["video_id"], row["label"], error=f"{type(exc).__name__}: {exc}"[:200]))
    return samples


def _blob_bytes(blob: lance.BlobFile | None, video_id: str) -> bytes:
    if blob is None:
        raise ValueError(f"{video_id}: the row has no video bytes")
    return blob.read()


def contact_sheet_png(samples: list[FrameSample], pairs_per_row: int = 2) -> bytes:
    """Each sample's frame beside its depth, titled with label and video id."""
    from matplotlib.figure import Figure

    rows = max(1, math.ceil(len(samples) / pairs_per_row))
    figure = Figure(figsize=(4.4 * pairs_per_row, 1.75 * rows + 0.2), dpi=90)
    grid = figure.subplots(rows, pairs_per_row, squeeze=False)
    for axes in grid.flat:
        axes.set_axis_off()
    for axes, sample in zip(grid.flat, samples, strict=False):  # the last row may have empty cells
        label = (sample.label or "(no label)")[:30]
        axes.set_title(f"{label}\n{sample.video_id[:34]}", fontsize=7, loc="left")
        if sample.frame is None:
            axes.text(0.5, 0.5, sample.error or "no frame", ha="center", va="center", fontsize=6, wrap=True)
            continue
        axes.imshow(frame_beside_depth(sample.frame, sample.depth))
        if sample.depth is None:
            axes.text(0.75, 0.5, "no depth", ha="center", va="center", fontsize=7, transform=axes.transAxes)
    if not samples:
        grid[0][0].text(0.5, 0.5, "no ok videos", ha="center", va="center")
    figure.tight_layout(pad=0.4)
    return figure_png(figure)


def _sample_rows(ds: lance.LanceDataset, where: str) -> list[dict]:
    """The columns a sample needs (the depth ones when the table version has them), with row ids."""
    names = set(ds.schema.names)
    columns = ["video_id", "label"] + [c for c in _DEPTH_COLUMNS if c in names]
    return ds.to_table(columns=columns, filter=where, with_row_id=True).to_pylist()


def _sample(row: dict, video: bytes) -> FrameSample:
    times = frame_timestamps(video)
    index = len(times) // 2
    depth = None
    if row.get("depth_status") == "ok" and row.get("depth") and row.get("depth_frames"):
        middle = row["depth_frames"] // 2
        depth = decode_depth(row["depth"], row["depth_lo"], row["depth_hi"], frame_indices=[middle])[0]
        index = int(np.argmin(np.abs(times - row["depth_timestamps"][middle])))
    frames, _ = decode_frames(video, np.array([index]))
    return FrameSample(row["video_id"], row["label"], frame=frames[0] if len(frames) else None, depth=depth)


@dataclass(frozen=True, kw_only=True)
class PairSample:
    """A near-duplicate pair as the sheet shows it: both videos' middle frames and the score."""

    a: FrameSample
    b: FrameSample
    caption: str


def pair_samples(ds: lance.LanceDataset, pairs: list[tuple[str, str, str]]) -> list[PairSample]:
    """(video_a, video_b, caption) -> both videos' samples; a video missing from `ds` shows why."""
    ids = list(dict.fromkeys(v for a, b, _ in pairs for v in (a, b)))
    found = {s.video_id: s for s in contact_sheet_samples(ds, ids)}

    def sample(video_id: str) -> FrameSample:
        return found.get(video_id) or FrameSample(video_id, None, error="not in this table version")

    return [PairSample(a=sample(a), b=sample(b), caption=caption) for a, b, caption in pairs]


def pair_sheet_png(pairs: list[PairSample]) -> bytes:
    """One row per pair: the two videos' middle frames side by side, titled with ids and the caption."""
    from matplotlib.figure import Figure

    rows = max(1, len(pairs))
    figure = Figure(figsize=(5.0, 1.6 * rows + 0.2), dpi=90)
    grid = figure.subplots(rows, 2, squeeze=False)
    for axes in grid.flat:
        axes.set_axis_off()
    for (left, right), pair in zip(grid, pairs, strict=False):
        for axes, sample in ((left, pair.a), (right, pair.b)):
            axes.set_title(sample.video_id[:34], fontsize=7, loc="left")
            if sample.frame is None:
                axes.text(0.5, 0.5, sample.error or "no frame", ha="center", va="center", fontsize=6, wrap=True)
            else:
                axes.imshow(sample.frame)
        left.text(0.0, -0.08, pair.caption, fontsize=7, transform=left.transAxes, va="top")
    if not pairs:
        grid[0][0].text(0.5, 0.5, "no near-duplicates", ha="center", va="center")
    figure.tight_layout(pad=0.4)
    return figure_png(figure)
