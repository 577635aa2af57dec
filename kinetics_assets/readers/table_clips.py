"""Training clips read from the video table: which rows a reader serves, and one row's clip.

Plain (no torch, no Ray) so the PyTorch dataset (torch_dataset.py) and the Ray reader (ray_clips.py)
share one table index and one way to read a row. Which frames a clip holds and decoding them are the
media layer's (`media.sampling.ClipSampling`, `media.decode.sample_clip`); this module adds the table:

* `ClipIndex` is the small scalar index of a pinned table version (positions, ids, labels, depth
  presence); `ClipIndex.row(i)` is one `IndexedVideo`.
* `read_clip` reads one row's clip and, when asked, the depth frames aligned with it and the
  transcript segments that overlap it, as a `TableClip`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kinetics_assets.dedup import duplicate_of
from kinetics_assets.media.decode import DecodedClip, sample_clip
from kinetics_assets.media.depth_codec import decode_depth
from kinetics_assets.media.sampling import ClipSampling, nearest_frames
from kinetics_assets.table import open_table, sql_literal

if TYPE_CHECKING:
    from collections.abc import Sequence

    import lance

log = logging.getLogger(__name__)


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
    rows); `where` is an extra Lance SQL predicate, e.g. "duration_s >= 5". `drop_duplicates` leaves
    out every video the near_duplicates side table says duplicates another video of the same table
    version (each group keeps its `duplicate_of`; with no side table nothing is dropped).
    """

    shards: tuple[str, ...] | None = None
    labels: tuple[str, ...] | None = None
    status: str | None = "ok"
    where: str | None = None
    drop_duplicates: bool = False

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


def _in_list(column: str, values: str | Sequence[str]) -> str:
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
    that filtering never shifts class indices).
    """
    table = ds.to_table(columns=["release", "label"])
    releases = set(pc.unique(table["release"]).drop_null().to_pylist())
    if len(releases) == 1 and (release := releases.pop()) in BUNDLED_CLASS_LISTS:
        return release_classes(release)
    return sorted(pc.unique(table["label"]).drop_null().to_pylist())


DEPTH_READ_COLUMNS = ["video_id", "depth", "depth_lo", "depth_hi", "depth_frames", "depth_sampling", "depth_timestamps"]


TRANSCRIPT_READ_COLUMNS = [
    "video_id",
    "transcript_status",
    "transcript_text",
    "transcript_language",
    "transcript_segments",
]


DepthServed = bool | Literal["auto"]
"""Whether a reader serves depth: always (rows without it left out), never, or "auto": when every
selected row has it, so that batches keep one shape."""


@dataclass(frozen=True)
class IndexedVideo:
    """One row a reader serves, as the index knows it: where it is and what the table says of it."""

    position: int  # row offset within the pinned version
    video_id: str
    status: str | None = "ok"
    frames: int | None = None  # the table's frame count, checked against the decoded video
    label: str | None = None
    label_index: int = -1  # into the reader's class list; -1 when unknown
    shard: str | None = None
    width: int | None = None
    height: int | None = None


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
    with_transcript: bool = False

    def __len__(self) -> int:
        return self.rows.num_rows

    def open(self) -> lance.LanceDataset:
        return open_table(self.uri, self.storage_options, version=self.version)

    def row(self, i: int) -> IndexedVideo:
        return IndexedVideo(**{name: self.rows[name][i].as_py() for name in self.rows.column_names})

    @classmethod
    def build(
        cls,
        uri: str,
        *,
        storage_options: dict[str, str] | None = None,
        version: int | None = None,
        filters: ClipFilters = ClipFilters(),
        with_depth: DepthServed = "auto",
        with_transcript: bool = False,
        classes: Sequence[str] | Literal["auto"] = "auto",
        dataset: lance.LanceDataset | None = None,
    ) -> ClipIndex:
        """Read the index once. `version=None` pins the latest version at this moment.

        `with_depth`: True serves depth and keeps only rows whose depth is ok (error if the table has
        no depth columns); "auto" serves depth when every selected row has it (else none, so batches
        keep one shape); False never reads depth.

        `with_transcript`: serve the transcript columns. Unlike depth no row is left out (a clip
        without speech is a training clip too): an untranscribed row, or a table without the
        columns, serves an empty transcript with status "" (logged here when the columns are absent).
        """
        if with_depth not in (True, False, "auto"):
            raise ValueError(f"with_depth must be True, False or 'auto', got {with_depth!r}")
        ds = dataset or open_table(uri, storage_options, version=version)
        has_depth_columns = "depth" in ds.schema.names
        if with_depth is True and not has_depth_columns:
            raise ValueError(
                f"{uri} (version {ds.version}) has no depth columns; run depth_maps first or use with_depth=False"
            )
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
            pc.fill_null(pc.equal(every["depth_status"], "ok"), fill_value=False).to_numpy(zero_copy_only=False)
            if has_depth_columns
            else np.zeros(every.num_rows, dtype=bool)
        )
        if filters.drop_duplicates:
            keep &= ~_duplicates(every, uri, storage_options, f"{uri}@{ds.version}")
        keep, serve_depth = _depth_rows(keep, depth_ok, with_depth, f"{uri}@{ds.version}")
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
        if with_transcript and "transcript_status" not in ds.schema.names:
            log.warning(
                "%s@%d has no transcript columns: every clip gets an empty transcript (with_transcript=True)",
                uri,
                ds.version,
            )
        return cls(uri, ds.version, storage_options, rows, list(classes), serve_depth, bool(with_transcript))


@dataclass(frozen=True)
class TableTranscript:
    """A row's transcript as a clip of it sees it.

    `text`, `status` and `language` are the whole video's; `segments` are only those overlapping the
    clip, as dicts `{"start", "end", "text"}` with times in seconds on the video's clock (the clock of
    `TableClip.timestamps`, not relative to the clip's first frame). A segment [start, end) overlaps
    when some frame time t of [first, last] has start <= t < end. An untranscribed row (or a table
    without transcript columns) has status "", empty text and language, no segments.
    """

    status: str  # ok, no_audio, no_speech, failed; "" when not transcribed
    text: str
    language: str
    segments: list[dict[str, float | str]]


def overlapping_segments(segments: list[dict] | None, first: float, last: float) -> list[dict[str, float | str]]:
    """The segments [start, end) that hold some instant of [first, last], in stored order."""
    return [
        {"start": float(s["start"]), "end": float(s["end"]), "text": s["text"] or ""}
        for s in segments or []
        if s["start"] <= last and s["end"] > first
    ]


@dataclass
class TableClip:
    """One row's clip as numpy, and with depth served the depth of exactly those frames."""

    video: np.ndarray  # uint8 [T,H,W,3] RGB
    timestamps: np.ndarray  # float64 [T] seconds
    frame_indices: np.ndarray  # int64 [T] presentation order
    depth: np.ndarray | None = None  # float32 [T,H,W], the frames' geometry
    depth_timestamps: np.ndarray | None = None  # float64 [T] seconds, the depth frames' own times
    transcript: TableTranscript | None = None


def _duplicates(every: pa.Table, uri: str, storage_options: dict[str, str] | None, table: str) -> np.ndarray:
    """Rows whose video duplicates another ok video of this version (a keeper since removed keeps
    its duplicates in: dropping them would lose the clip altogether).
    """
    duplicates = duplicate_of(uri, storage_options=storage_options)
    ids = every["video_id"].to_pylist()
    present = {v for v, s in zip(ids, every["status"].to_pylist(), strict=True) if s == "ok"}
    drop = np.array([duplicates.get(v) in present for v in ids], dtype=bool)
    log.info("%s: %d near-duplicate rows left out (drop_duplicates=True)", table, int(drop.sum()))
    return drop


def _depth_rows(keep: np.ndarray, depth_ok: np.ndarray, with_depth: DepthServed, table: str) -> tuple[np.ndarray, bool]:
    """The rows kept and whether depth is served, as `ClipIndex.build` says for `with_depth`."""
    if with_depth is True:
        dropped = int(np.count_nonzero(keep & ~depth_ok))
        if dropped:
            log.info("%s: %d selected rows have no depth and are left out (with_depth=True)", table, dropped)
        return keep & depth_ok, True
    if with_depth == "auto":
        serve_depth = bool(keep.any()) and bool(depth_ok[keep].all())
        if not serve_depth and depth_ok[keep].any():
            log.info("%s: only some selected rows have depth; serving no depth (with_depth='auto')", table)
        return keep, serve_depth
    return keep, False


def read_clip(
    ds: lance.LanceDataset,
    entry: IndexedVideo,
    sampling: ClipSampling,
    *,
    rng: np.random.Generator | None = None,
    clip: int = 0,
    short_side: int | None = None,
    with_depth: bool = False,
    with_transcript: bool = False,
) -> TableClip:
    """One row's clip, decoded from the row's video blob.

    Depth stored for every frame ("every") is read at the same indices. Depth stored for a subset
    (fps=/count= sampling) is read at the depth frame nearest each RGB timestamp: `depth_timestamps`
    in the result tells how far apart they are. `with_transcript` adds the transcript segments that
    overlap the clip (see TableTranscript). Any failure raises BadVideoError naming the video.
    """
    try:
        return _read_clip(
            ds,
            entry,
            sampling,
            rng=rng,
            clip=clip,
            short_side=short_side,
            with_depth=with_depth,
            with_transcript=with_transcript,
        )
    except BadVideoError:
        raise
    except Exception as exc:
        raise BadVideoError(entry.video_id, entry.position, f"{type(exc).__name__}: {exc}") from exc


def _read_clip(
    ds: lance.LanceDataset,
    entry: IndexedVideo,
    sampling: ClipSampling,
    *,
    rng: np.random.Generator | None,
    clip: int,
    short_side: int | None,
    with_depth: bool,
    with_transcript: bool,
) -> TableClip:
    if entry.status not in (None, "ok"):
        raise ValueError(f"status is {entry.status!r}: the table holds no usable video")
    blob = ds.take_blobs("video", indices=[entry.position])[0]
    if blob is None:
        raise ValueError("no video bytes (null blob)")
    data = blob.readall()
    decoded = sample_clip(data, sampling, rng=rng, clip=clip, short_side=short_side, expected_frames=entry.frames)
    out = TableClip(video=decoded.frames, timestamps=decoded.timestamps, frame_indices=decoded.indices)
    if with_depth:
        out.depth, out.depth_timestamps = _read_depth(ds, entry, decoded)
    if with_transcript:
        out.transcript = read_transcript(ds, entry, float(decoded.timestamps[0]), float(decoded.timestamps[-1]))
    return out


def _read_depth(ds: lance.LanceDataset, entry: IndexedVideo, clip: DecodedClip) -> tuple[np.ndarray, np.ndarray]:
    """The depth frames aligned with the clip's frames, resized to them, and the depth frames' times."""
    row = ds.take([entry.position], columns=DEPTH_READ_COLUMNS).to_pylist()[0]
    if row["video_id"] != entry.video_id:
        raise ValueError(f"row {entry.position} holds {row['video_id']}, not {entry.video_id} (index out of date)")
    if not row["depth"]:
        raise ValueError("no depth bytes")
    depth_ts = np.asarray(row["depth_timestamps"] or [], dtype=np.float64)
    if row["depth_sampling"] in (None, "every"):
        if row["depth_frames"] != clip.video_frames:
            raise ValueError(
                f"depth has {row['depth_frames']} frames for a video of {clip.video_frames} (sampling 'every')"
            )
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
    return depth, times


def read_transcript(ds: lance.LanceDataset, entry: IndexedVideo, first: float, last: float) -> TableTranscript:
    """The row's transcript, its segments cut to those overlapping [first, last] (seconds)."""
    if "transcript_status" not in ds.schema.names:
        return TableTranscript(status="", text="", language="", segments=[])
    row = ds.take([entry.position], columns=TRANSCRIPT_READ_COLUMNS).to_pylist()[0]
    if row["video_id"] != entry.video_id:
        raise ValueError(f"row {entry.position} holds {row['video_id']}, not {entry.video_id} (index out of date)")
    return TableTranscript(
        status=row["transcript_status"] or "",
        text=row["transcript_text"] or "",
        language=row["transcript_language"] or "",
        segments=overlapping_segments(row["transcript_segments"], first, last),
    )


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of float depth [T,H,W] to (width, height), frame by frame."""
    from PIL import Image

    width, height = size
    out = np.empty((len(depth), height, width), dtype=np.float32)
    for i, plane in enumerate(depth):
        out[i] = np.asarray(
            Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
    return out


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The rng of one dataset item in one epoch: the same (seed, epoch, index) gives the same clip in
    any process, worker count or sampler order.
    """
    return np.random.default_rng([seed, epoch, index])
