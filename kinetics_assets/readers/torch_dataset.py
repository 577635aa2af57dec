"""A PyTorch map-style dataset of clips from the video table, at a pinned table version.

Each item decodes one clip (seek to the keyframe before it, decode forward to its last frame; see
media/decode.py) and, when the table has depth for it, the depth of exactly those frames.

Workers: Lance is not fork-safe. Building the index starts Lance's runtime threads in the main
process, and a DataLoader worker forked from it deadlocked inside Lance in one of our benchmark runs
(most runs work, which makes it worse). So the dataset holds no open Lance handle in its pickled
state, opens the table lazily once per process (keyed by pid), and refuses to run in a worker that
was forked rather than started fresh: use `clip_loader(...)` (a DataLoader whose workers come from
a forkserver with this module preloaded, so they start in well under a second) or pass
`multiprocessing_context="forkserver"` / `"spawn"` yourself.

Randomness: a random clip start and a random crop come from an rng seeded by (seed, epoch, index),
so an item is the same in any worker count or sampler order; call `set_epoch(e)` before each epoch
(as with DistributedSampler) for new clips. With `persistent_workers=True` the workers keep the
epoch they were started with: leave it off when you use set_epoch.

Class index: the sorted class list of the table's Kinetics release (bundled with the package) when
every row is of one release, else the sorted distinct labels of the whole table version; -1 for a
label that is not in the list (or no label). `classes=` overrides it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from kinetics_assets.media.sampling import ClipSampling
from kinetics_assets.readers.table_clips import (
    BadVideoError,
    ClipFilters,
    ClipIndex,
    DepthServed,
    item_rng,
    read_clip,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import lance

log = logging.getLogger(__name__)

CropMode = Literal["centre", "random"]
BadRows = Literal["skip", "raise"]


@dataclass(frozen=True)
class ClipTransform:
    """Per-clip geometry and value transforms; depth gets the same resize and crop as the frames.

    `short_side` scales while decoding (aspect kept). `crop` (size or (height, width)) cuts a
    `crop_mode` "centre" or "random" window. `mean`/`std` (per channel, on frames scaled to [0, 1])
    normalise and make the video float32; without them it stays uint8.
    """

    short_side: int | None = None
    crop: int | tuple[int, int] | None = None
    crop_mode: CropMode = "centre"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.crop_mode not in get_args(CropMode):
            raise ValueError(f"ClipTransform.crop_mode={self.crop_mode!r} is not 'centre' or 'random'")
        if (self.mean is None) != (self.std is None):
            raise ValueError("ClipTransform: give mean and std together")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError(f"ClipTransform.std must be > 0, got {self.std}")
        if self.short_side is not None and self.short_side < 1:
            raise ValueError(f"ClipTransform.short_side must be >= 1, got {self.short_side}")

    @property
    def crop_hw(self) -> tuple[int, int] | None:
        if self.crop is None:
            return None
        return (self.crop, self.crop) if isinstance(self.crop, int) else (int(self.crop[0]), int(self.crop[1]))

    def crop_window(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """(top, left, crop height, crop width); a crop larger than the frame is an error."""
        ch, cw = self.crop_hw or (height, width)
        if ch > height or cw > width:
            raise ValueError(f"crop {ch}x{cw} (h x w) is larger than the frames, {height}x{width}")
        if self.crop_mode == "random":
            return int(rng.integers(height - ch + 1)), int(rng.integers(width - cw + 1)), ch, cw
        return (height - ch) // 2, (width - cw) // 2, ch, cw


class LanceClipDataset(Dataset):
    """Clips of the video table; item i is clip `i % clips_per_video` of selected video
    `i // clips_per_video`.

    An item is a dict: `video` uint8 [T,C,H,W] ([T,H,W,C] with channels_last; float32 when the
    transform normalises), `label` (class index, -1 if unknown), `video_id`, `clip`, `timestamps`
    float64 [T] (s), `frame_indices` int64 [T] and, when depth is served, `depth` float32 [T,H,W] of
    the same frames and `depth_timestamps` float64 [T]. With `with_transcript=True` also
    `transcript` (the video's text), `transcript_status` ("" when not transcribed),
    `transcript_language` and `transcript_segments`: a list of {"start", "end", "text"} dicts, the
    segments overlapping the clip, times in seconds on the video's clock like `timestamps` (see
    table_clips.TableTranscript). The default collate batches an item without transcript; with one,
    use `collate_clips` (clip_loader's default), which keeps the segments a list per item.

    Bad rows (a failed status when included, missing or undecodable bytes, a frame count that does
    not match the table): `bad_rows="raise"` raises BadVideoError naming the video; "skip" logs a
    warning naming it and returns the next good item instead (the following index, wrapping), so
    batch shapes and the epoch length stay the same and the substitute's `video_id` says what it is.

    `drop_duplicates=True` leaves out the videos the near_duplicates asset found to duplicate
    another (see `ClipFilters.drop_duplicates`), so that copies neither inflate an epoch nor leak
    between splits.
    """

    def __init__(
        self,
        uri: str,
        *,
        storage_options: dict[str, str] | None = None,
        version: int | None = None,
        sampling: ClipSampling = ClipSampling(),
        shards: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        status: str | None = "ok",
        where: str | None = None,
        drop_duplicates: bool = False,
        transform: ClipTransform = ClipTransform(),
        channels_last: bool = False,
        with_depth: DepthServed = "auto",
        with_transcript: bool = False,
        bad_rows: BadRows = "skip",
        classes: Sequence[str] | Literal["auto"] = "auto",
        seed: int = 0,
    ) -> None:
        if bad_rows not in get_args(BadRows):
            raise ValueError(f"bad_rows must be 'skip' or 'raise', got {bad_rows!r}")
        filters = ClipFilters(
            shards=tuple(shards) if shards is not None else None,
            labels=tuple(labels) if labels is not None else None,
            status=status,
            where=where,
            drop_duplicates=drop_duplicates,
        )
        self.index = ClipIndex.build(
            uri,
            storage_options=storage_options,
            version=version,
            filters=filters,
            with_depth=with_depth,
            with_transcript=with_transcript,
            classes=classes,
        )
        if len(self.index) == 0:
            log.warning("%s@%d: no rows match %s", uri, self.index.version, filters.predicate())
        self.sampling = sampling
        self.transform = transform
        self.channels_last = channels_last
        self.bad_rows = bad_rows
        self.seed = seed
        self.epoch = 0
        self._ds: lance.LanceDataset | None = None
        self._pid: int | None = None
        self._bad_positions: set[int] = set()
        # The process whose Lance runtime built the index; a forked copy of it must not use Lance.
        self._owner_pid: int | None = os.getpid()

    # -- what the dataset is --------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self.index.version

    @property
    def classes(self) -> list[str]:
        return self.index.classes

    @property
    def with_depth(self) -> bool:
        return self.index.with_depth

    @property
    def with_transcript(self) -> bool:
        return self.index.with_transcript

    @property
    def video_ids(self) -> list[str]:
        return self.index.rows["video_id"].to_pylist()

    def __len__(self) -> int:
        return len(self.index) * self.sampling.clips_per_video

    def set_epoch(self, epoch: int) -> None:
        """New random clip starts and crops for this epoch (deterministic per (seed, epoch, index))."""
        self.epoch = int(epoch)

    # -- process-local Lance handle ---------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_ds"] = None
        state["_pid"] = None
        state["_owner_pid"] = None
        return state

    def _dataset(self) -> lance.LanceDataset:
        if self._owner_pid is not None and self._owner_pid != os.getpid():
            raise RuntimeError(
                f"LanceClipDataset({self.index.uri}): this worker was forked from a process that uses Lance, "
                "which is not fork-safe and can deadlock; build the DataLoader with "
                "kinetics_assets.readers.torch_dataset.clip_loader(...) or multiprocessing_context='forkserver' (or 'spawn')"
            )
        if self._ds is None or self._pid != os.getpid():
            self._ds = self.index.open()
            self._pid = os.getpid()
            self._bad_positions = set()
        return self._ds

    # -- items ------------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} clips")
        index %= n
        if self.bad_rows == "raise":
            return self._item(index)
        per_video = self.sampling.clips_per_video
        errors: list[str] = []
        for step in range(len(self.index)):
            candidate = (index + step * per_video) % n
            position = self.index.rows["position"][candidate // per_video].as_py()
            if position in self._bad_positions:
                continue
            try:
                return self._item(candidate)
            except BadVideoError as exc:
                self._bad_positions.add(position)
                errors.append(str(exc))
                log.warning("skipping bad row: %s", exc)
        raise RuntimeError(
            f"{self.index.uri}@{self.version}: no readable video among {len(self.index)} rows"
            + (f"; last error: {errors[-1]}" if errors else "")
        )

    def _item(self, index: int) -> dict[str, Any]:
        video_slot, clip = divmod(index, self.sampling.clips_per_video)
        entry = self.index.row(video_slot)
        rng = item_rng(self.seed, self.epoch, index)
        raw = read_clip(
            self._dataset(),
            entry,
            self.sampling,
            rng=rng,
            clip=clip,
            short_side=self.transform.short_side,
            with_depth=self.with_depth,
            with_transcript=self.with_transcript,
        )
        frames = raw.video
        top, left, ch, cw = self.transform.crop_window(frames.shape[1], frames.shape[2], rng)
        video = torch.from_numpy(np.ascontiguousarray(frames[:, top : top + ch, left : left + cw]))
        if self.transform.mean is not None:
            mean = torch.tensor(self.transform.mean, dtype=torch.float32)
            std = torch.tensor(self.transform.std, dtype=torch.float32)
            video = (video.to(torch.float32) / 255.0 - mean) / std
        if not self.channels_last:
            video = video.permute(0, 3, 1, 2).contiguous()
        item = {
            "video": video,
            "label": int(entry.label_index),
            "video_id": entry.video_id,
            "clip": clip,
            "timestamps": torch.from_numpy(np.asarray(raw.timestamps, dtype=np.float64)),
            "frame_indices": torch.from_numpy(np.asarray(raw.frame_indices, dtype=np.int64)),
        }
        if raw.depth is not None:  # read when the dataset serves depth
            depth = raw.depth[:, top : top + ch, left : left + cw]
            item["depth"] = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
            item["depth_timestamps"] = torch.from_numpy(np.asarray(raw.depth_timestamps, dtype=np.float64))
        if raw.transcript is not None:
            item.update(
                transcript=raw.transcript.text,
                transcript_status=raw.transcript.status,
                transcript_language=raw.transcript.language,
                transcript_segments=raw.transcript.segments,
            )
        return item


PER_ITEM_KEYS = ("transcript_segments",)
"""Item fields of varying length that a batch keeps as one list per item."""


def collate_clips(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """default_collate, except that `transcript_segments` stays a list (one list of segment dicts per
    item): default_collate would require every item to have as many segments.
    """
    listed = [key for key in PER_ITEM_KEYS if key in batch[0]]
    out = default_collate([{k: v for k, v in item.items() if k not in listed} for item in batch])
    for key in listed:
        out[key] = [item[key] for item in batch]
    return out


def clip_loader(dataset: Dataset, *, num_workers: int = 0, **kwargs: Any) -> DataLoader:
    """A DataLoader that is safe with Lance: workers come from a forkserver (a fresh interpreter
    that never ran Lance) with this module preloaded, so each starts by a cheap fork. It batches
    with `collate_clips`. Other arguments are DataLoader's; an explicit `multiprocessing_context`
    or `collate_fn` wins.
    """
    kwargs.setdefault("collate_fn", collate_clips)
    if num_workers > 0 and "multiprocessing_context" not in kwargs:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        kwargs["multiprocessing_context"] = context
    return DataLoader(dataset, num_workers=num_workers, **kwargs)
