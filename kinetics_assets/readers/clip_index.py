"""Training clips out of the video table: which frames a clip holds, and decoding only those.

Plain (no torch, no Ray) so the PyTorch dataset (torch_dataset.py) and the Ray reader (ray_clips.py)
share one definition of a clip, one decoder and one table index.

* `ClipSampling` turns a video's frame timestamps into frame indices: `num_frames` frames `stride`
  frames apart, or at a target `fps` by timestamp. A video shorter than the clip is padded by
  repeating the clip's last frame (not by looping: time never runs backwards inside a clip, and the
  returned indices show the repeats).
* `decode_clip` / `sample_clip` seek to the keyframe before the clip and decode forward only to its
  last frame (stored videos have a keyframe every ~1 s, so that is at most ~1 s of extra decoding).
* `ClipIndex` is the small scalar index of a pinned table version (positions, ids, labels, depth
  presence); `read_clip` reads one row's clip and, when asked, the depth frames aligned with it.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, BinaryIO

import av
import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kinetics_assets.media.depth_codec import decode_depth
from kinetics_assets.media.frames import decode_at, packet_index, rgb_converter, video_stream
from kinetics_assets.table.video_table import open_table, sql_literal

log = logging.getLogger(__name__)

START_POLICIES = ("random", "uniform", "centre")


@dataclass(frozen=True)
class ClipSampling:
    """How a clip is cut from a video.

    `start`: "random" (needs an rng; reproducible when the rng is seeded per item), "centre" (the
    middle of the valid starts) or "uniform" (`clips_per_video` starts spread evenly from the first to
    the last valid start; with one clip per video it is the centre). `fps` samples by timestamp (the
    frame nearest each tick of a `fps` clock) and then ignores `stride`.
    """

    num_frames: int = 16
    stride: int = 1
    fps: float | None = None
    start: str = "random"
    clips_per_video: int = 1

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"ClipSampling.num_frames must be >= 1, got {self.num_frames}")
        if self.stride < 1:
            raise ValueError(f"ClipSampling.stride must be >= 1, got {self.stride}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"ClipSampling.fps must be > 0 or None, got {self.fps}")
        if self.fps is not None and self.stride != 1:
            raise ValueError("ClipSampling: give either stride or fps, not both")
        if self.start not in START_POLICIES:
            raise ValueError(f"ClipSampling.start={self.start!r} is not one of {', '.join(START_POLICIES)}")
        if self.clips_per_video < 1:
            raise ValueError(f"ClipSampling.clips_per_video must be >= 1, got {self.clips_per_video}")

    def indices(self, timestamps: np.ndarray, *, rng: np.random.Generator | None = None, clip: int = 0) -> np.ndarray:
        """Frame indices (into `timestamps`, presentation order) of clip number `clip` of a video."""
        ts = np.asarray(timestamps, dtype=np.float64)
        n = len(ts)
        if n == 0:
            raise ValueError("cannot sample a clip from a video with no frames")
        if not 0 <= clip < self.clips_per_video:
            raise IndexError(f"clip {clip} out of range for clips_per_video={self.clips_per_video}")
        starts = self._valid_starts(ts)
        if self.start == "random":
            if rng is None:
                raise ValueError("ClipSampling(start='random') needs an rng")
            first = int(starts[rng.integers(len(starts))])
        elif self.start == "uniform" and self.clips_per_video > 1:
            first = int(starts[int(clip * (len(starts) - 1) / (self.clips_per_video - 1) + 0.5)])
        else:
            first = int(starts[(len(starts) - 1) // 2])
        if self.fps is None:
            picked = first + np.arange(self.num_frames, dtype=np.int64) * self.stride
            inside = picked < n
            # Pad with the clip's last in-range frame.
            return np.where(inside, picked, picked[inside][-1])
        ticks = ts[first] + np.arange(self.num_frames) / self.fps
        return nearest_frames(ts, ticks)

    def _valid_starts(self, ts: np.ndarray) -> np.ndarray:
        """Start frames whose whole clip fits in the video; just frame 0 when none does (padding)."""
        n = len(ts)
        if self.fps is None:
            span = (self.num_frames - 1) * self.stride + 1
            starts = np.arange(max(n - span + 1, 0))
        else:
            duration = (self.num_frames - 1) / self.fps
            starts = np.flatnonzero(ts + duration <= ts[-1] + 1e-6)
        return starts if len(starts) else np.zeros(1, dtype=np.int64)


def nearest_frames(timestamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Index of the frame nearest each time (ties go to the earlier frame); outside the video, the
    first or last frame."""
    ts = np.asarray(timestamps, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    after = np.clip(np.searchsorted(ts, t, side="left"), 0, len(ts) - 1)
    before = np.clip(after - 1, 0, len(ts) - 1)
    take_before = np.abs(t - ts[before]) <= np.abs(ts[after] - t) + 1e-9
    return np.where(take_before, before, after).astype(np.int64)


@dataclass
class DecodedClip:
    frames: np.ndarray  # uint8 [T,H,W,3] RGB
    timestamps: np.ndarray  # float64 [T] seconds
    indices: np.ndarray  # int64 [T] frame indices, presentation order
    video_frames: int  # frames in the whole video
    video_timestamps: np.ndarray = field(repr=False)  # float64 [video_frames]


def _open(video: bytes | bytearray | memoryview | BinaryIO) -> av.container.InputContainer:
    source = io.BytesIO(bytes(video)) if isinstance(video, (bytes, bytearray, memoryview)) else video
    return av.open(source, mode="r")


def _decode_indices(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    all_pts: list[int],
    keyframes: list[int],
    indices: np.ndarray,
    size: tuple[int, int] | None,
) -> np.ndarray:
    n = len(all_pts)
    bad = indices[(indices < 0) | (indices >= n)]
    if bad.size:
        raise IndexError(f"frame index {int(bad[0])} out of range for a video of {n} frames")
    width, height = size if size is not None else (None, None)
    rgb = rgb_converter(width, height)
    decoded = decode_at(container, stream, (all_pts[i] for i in indices.tolist()), keyframes, rgb)
    return np.stack([decoded[all_pts[i]] for i in indices.tolist()])


def decode_clip(
    video: bytes | bytearray | memoryview | BinaryIO,
    indices: np.ndarray | list[int],
    *,
    size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames uint8 [T,H,W,3] and their timestamps (s) at the given frame indices.

    Indices are presentation order over the whole video (repeats and any order allowed). Only the
    stretch from the keyframe before each wanted run to its last frame is decoded. `size` (width,
    height) scales the frames during colour conversion, which is cheaper than scaling afterwards.
    """
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    with _open(video) as container:
        stream = video_stream(container)
        all_pts, keyframes = packet_index(container, stream)
        frames = _decode_indices(container, stream, all_pts, keyframes, wanted, size)
        times = np.asarray([all_pts[i] for i in wanted.tolist()], dtype=np.float64) * float(stream.time_base)
    return frames, times


def sample_clip(
    video: bytes | bytearray | memoryview | BinaryIO,
    sampling: ClipSampling,
    *,
    rng: np.random.Generator | None = None,
    clip: int = 0,
    short_side: int | None = None,
    expected_frames: int | None = None,
) -> DecodedClip:
    """Pick a clip with `sampling` from the video's own timestamps and decode it (one open).

    `short_side` scales the frames (aspect kept) while converting them. `expected_frames` (the
    table's frame count) catches truncated videos, which otherwise demux and decode without error,
    just shorter.
    """
    with _open(video) as container:
        stream = video_stream(container)
        size = short_side_size(stream.codec_context.width, stream.codec_context.height, short_side)
        all_pts, keyframes = packet_index(container, stream)
        if not all_pts:
            raise ValueError("video holds no frames")
        if expected_frames is not None and len(all_pts) != expected_frames:
            raise ValueError(f"video holds {len(all_pts)} frames, the table says {expected_frames} (truncated or damaged)")
        video_ts = np.asarray(all_pts, dtype=np.float64) * float(stream.time_base)
        indices = sampling.indices(video_ts, rng=rng, clip=clip)
        frames = _decode_indices(container, stream, all_pts, keyframes, indices, size)
    return DecodedClip(frames, video_ts[indices], indices, len(all_pts), video_ts)


def short_side_size(width: int, height: int, short_side: int | None) -> tuple[int, int] | None:
    """(width, height) scaled so the shorter side is `short_side`, aspect kept; None for no resize."""
    if short_side is None or min(width, height) == short_side:
        return None
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


# --------------------------------------------------------------------------------------------------
# The table side: a pinned version's scalar index and reading one row's clip.


class BadVideoError(RuntimeError):
    """A row whose clip cannot be read; names the video, its row position and the cause."""

    def __init__(self, video_id: str, position: int, cause: str) -> None:
        super().__init__(f"video {video_id} (row {position}): {cause}")
        self.video_id = video_id
        self.position = position
        self.cause = cause


@dataclass(frozen=True)
class ClipFilters:
    """Which rows a reader serves. `status=None` keeps every status (failed rows then read as bad
    rows); `where` is an extra Lance SQL predicate, e.g. "duration_s >= 5"."""

    shards: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    status: str | None = "ok"
    where: str | None = None

    def predicate(self) -> str | None:
        parts = []
        if self.shards is not None:
            parts.append(_in_list("shard", self.shards))
        if self.labels is not None:
            parts.append(_in_list("label", self.labels))
        if self.status is not None:
            parts.append(f"status = {sql_literal(self.status)}")
        if self.where:
            parts.append(f"({self.where})")
        return " AND ".join(parts) if parts else None


def _in_list(column: str, values) -> str:
    if isinstance(values, str):
        values = (values,)
    if not values:
        return "false"
    return f"{column} IN ({', '.join(sql_literal(v) for v in values)})"


BUNDLED_CLASS_LISTS = ("k400", "k600", "k700_2020")


def release_classes(release: str) -> list[str]:
    """The sorted class list bundled for a Kinetics release (index = class index)."""
    if release not in BUNDLED_CLASS_LISTS:
        raise ValueError(f"no bundled class list for release {release!r}; one of {', '.join(BUNDLED_CLASS_LISTS)}")
    text = resources.files("kinetics_assets.ingest").joinpath("manifests", f"{release}_classes.txt").read_text()
    return [line for line in text.splitlines() if line]


def table_classes(ds: lance.LanceDataset) -> list[str]:
    """Class list of a table: the release's bundled list when every row is of one Kinetics release,
    else the sorted distinct labels of the whole table version (all rows, whatever the filters, so
    that filtering never shifts class indices)."""
    table = ds.to_table(columns=["release", "label"])
    releases = set(pc.unique(table["release"]).drop_null().to_pylist())
    if len(releases) == 1 and (release := releases.pop()) in BUNDLED_CLASS_LISTS:
        return release_classes(release)
    return sorted(pc.unique(table["label"]).drop_null().to_pylist())


DEPTH_READ_COLUMNS = ["video_id", "depth", "depth_lo", "depth_hi", "depth_frames", "depth_sampling", "depth_timestamps"]


@dataclass
class ClipIndex:
    """The scalar index of the rows a reader serves, at one pinned table version.

    Holds no open dataset (so it pickles small and safely); `open()` gives a handle for this process.
    `positions` are row offsets within the pinned version (what `take` / `take_blobs(indices=...)`
    address).
    """

    uri: str
    version: int
    storage_options: dict[str, str] | None
    rows: pa.Table  # position, video_id, label, label_index, shard, status, frames, width, height
    classes: list[str]
    with_depth: bool

    def __len__(self) -> int:
        return self.rows.num_rows

    def open(self) -> lance.LanceDataset:
        return open_table(self.uri, self.storage_options, version=self.version)

    def row(self, i: int) -> dict[str, Any]:
        return {name: self.rows[name][i].as_py() for name in self.rows.column_names}

    @classmethod
    def build(
        cls,
        uri: str,
        *,
        storage_options: dict[str, str] | None = None,
        version: int | None = None,
        filters: ClipFilters = ClipFilters(),
        with_depth: bool | str = "auto",
        classes: list[str] | str = "auto",
        dataset: lance.LanceDataset | None = None,
    ) -> ClipIndex:
        """Read the index once. `version=None` pins the latest version at this moment.

        `with_depth`: True serves depth and keeps only rows whose depth is ok (error if the table has
        no depth columns); "auto" serves depth when every selected row has it (else none, so batches
        keep one shape); False never reads depth.
        """
        if with_depth not in (True, False, "auto"):
            raise ValueError(f"with_depth must be True, False or 'auto', got {with_depth!r}")
        ds = dataset or open_table(uri, storage_options, version=version)
        has_depth_columns = "depth" in ds.schema.names
        if with_depth is True and not has_depth_columns:
            raise ValueError(f"{uri} (version {ds.version}) has no depth columns; run depth_maps first or use with_depth=False")
        columns = ["video_id", "label", "shard", "status", "frames", "width", "height"]
        if has_depth_columns:
            columns.append("depth_status")
        # Unfiltered, in order: the row's place in this scan is its offset within the version.
        every = ds.to_table(columns=columns, with_row_id=True)
        keep = np.ones(every.num_rows, dtype=bool)
        predicate = filters.predicate()
        if predicate is not None:
            try:
                selected = ds.to_table(columns=[], filter=predicate, with_row_id=True)["_rowid"]
            except Exception as exc:  # Lance reports a bad predicate as several error types
                raise ValueError(f"{uri}: cannot filter rows with {predicate!r}: {exc}") from exc
            keep = pc.is_in(every["_rowid"], value_set=selected).to_numpy(zero_copy_only=False)
        depth_ok = (
            pc.fill_null(pc.equal(every["depth_status"], "ok"), False).to_numpy(zero_copy_only=False)
            if has_depth_columns
            else np.zeros(every.num_rows, dtype=bool)
        )
        if with_depth is True:
            dropped = int(np.count_nonzero(keep & ~depth_ok))
            if dropped:
                log.info("%s@%d: %d selected rows have no depth and are left out (with_depth=True)", uri, ds.version, dropped)
            keep &= depth_ok
            serve_depth = True
        elif with_depth == "auto":
            serve_depth = bool(keep.any()) and bool(depth_ok[keep].all())
            if not serve_depth and depth_ok[keep].any():
                log.info("%s@%d: only some selected rows have depth; serving no depth (with_depth='auto')", uri, ds.version)
        else:
            serve_depth = False
        if isinstance(classes, str):
            if classes != "auto":
                raise ValueError(f"classes must be 'auto' or a list of class names, got {classes!r}")
            classes = table_classes(ds)
        class_of = {name: i for i, name in enumerate(classes)}
        positions = np.flatnonzero(keep)
        rows = every.drop_columns(["_rowid"] + (["depth_status"] if has_depth_columns else [])).take(positions)
        label_index = [class_of.get(label, -1) if label is not None else -1 for label in rows["label"].to_pylist()]
        rows = rows.append_column("position", pa.array(positions, pa.int64()))
        rows = rows.append_column("label_index", pa.array(label_index, pa.int64()))
        return cls(uri, ds.version, storage_options, rows, list(classes), serve_depth)


def read_clip(
    ds: lance.LanceDataset,
    entry: dict[str, Any],
    sampling: ClipSampling,
    *,
    rng: np.random.Generator | None = None,
    clip: int = 0,
    short_side: int | None = None,
    with_depth: bool = False,
) -> dict[str, Any]:
    """One row's clip as numpy: video uint8 [T,H,W,3], timestamps, frame_indices and, with depth,
    depth float32 [T,H,W] of exactly those frames plus the depth frames' own timestamps.

    Depth stored for every frame ("every") is read at the same indices. Depth stored for a subset
    (fps=/count= sampling) is read at the depth frame nearest each RGB timestamp: `depth_timestamps`
    in the result tells how far apart they are. Any failure raises BadVideoError naming the video.
    """
    video_id, position = entry["video_id"], int(entry["position"])
    try:
        if entry.get("status") not in (None, "ok"):
            raise ValueError(f"status is {entry['status']!r}: the table holds no usable video")
        blob = ds.take_blobs("video", indices=[position])[0]
        if blob is None:
            raise ValueError("no video bytes (null blob)")
        data = blob.readall()
        decoded = sample_clip(data, sampling, rng=rng, clip=clip, short_side=short_side, expected_frames=entry.get("frames"))
        out = {
            "video": decoded.frames,
            "timestamps": decoded.timestamps,
            "frame_indices": decoded.indices,
        }
        if with_depth:
            out.update(_read_depth(ds, entry, decoded))
        return out
    except BadVideoError:
        raise
    except Exception as exc:
        raise BadVideoError(video_id, position, f"{type(exc).__name__}: {exc}") from exc


def _read_depth(ds: lance.LanceDataset, entry: dict[str, Any], clip: DecodedClip) -> dict:
    row = ds.take([int(entry["position"])], columns=DEPTH_READ_COLUMNS).to_pylist()[0]
    if row["video_id"] != entry["video_id"]:
        raise ValueError(f"row {entry['position']} holds {row['video_id']}, not {entry['video_id']} (index out of date)")
    if not row["depth"]:
        raise ValueError("no depth bytes")
    depth_ts = np.asarray(row["depth_timestamps"] or [], dtype=np.float64)
    if row["depth_sampling"] in (None, "every"):
        if row["depth_frames"] != clip.video_frames:
            raise ValueError(f"depth has {row['depth_frames']} frames for a video of {clip.video_frames} (sampling 'every')")
        depth_indices = clip.indices
    else:
        if len(depth_ts) == 0:
            raise ValueError(f"depth sampled with {row['depth_sampling']!r} but no depth_timestamps stored")
        depth_indices = nearest_frames(depth_ts, clip.timestamps)
    depth = decode_depth(row["depth"], row["depth_lo"], row["depth_hi"], frame_indices=depth_indices)
    height, width = clip.frames.shape[1:3]
    if depth.shape[1:] != (height, width):
        # Same geometry as the RGB frames (depth is stored at the video's size; a short_side resize
        # of the RGB applies to it too).
        depth = resize_depth(depth, (width, height))
    times = depth_ts[depth_indices] if len(depth_ts) else clip.video_timestamps[depth_indices]
    return {"depth": depth, "depth_timestamps": times}


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of float depth [T,H,W] to (width, height), frame by frame."""
    from PIL import Image

    width, height = size
    out = np.empty((len(depth), height, width), dtype=np.float32)
    for i, plane in enumerate(depth):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)).resize((width, height), Image.BILINEAR))
    return out


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The rng of one dataset item in one epoch: the same (seed, epoch, index) gives the same clip in
    any process, worker count or sampler order."""
    return np.random.default_rng([seed, epoch, index])
