"""The `depth_maps` step for many shards: ok videos -> depth -> the table's depth columns.

Plain orchestration (no Dagster, no Ray): the asset passes in where things are, how to log, and the
executor that runs the videos (`steps.depth_stream.DepthExecutor`: on Ray, or in this process).
Depth is written for each shard's ok rows in one commit that adds only depth data files; a re-run
overwrites the same columns, so it is idempotent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kinetics_assets.media.decode import frame_timestamps
from kinetics_assets.media.depth_codec import DepthEncoding, decode_depth
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.qa.previews import shard_preview
from kinetics_assets.steps.checks import (
    DEPTH_FRAME_COUNT,
    DEPTH_SIZE_MATCHES_VIDEO,
    DEPTH_VALUES_IN_RANGE,
    EVERY_OK_VIDEO_HAS_DEPTH,
    Verdict,
    Verdicts,
)
from kinetics_assets.steps.depth_stream import DepthExecutor, DepthRequest, DepthStream
from kinetics_assets.steps.depth_video import DepthJob
from kinetics_assets.steps.failures import ShardFailure
from kinetics_assets.steps.progress import Progress
from kinetics_assets.steps.shard_state import read_shard_state
from kinetics_assets.table import (
    ensure_depth_columns,
    open_table,
    sql_literal,
    write_depth,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import lance

    from kinetics_assets.depth.model import DepthModelConfig


@dataclass(frozen=True, kw_only=True)
class DepthFailure:
    """A video of the shard whose depth could not be made, and why."""

    video_id: str
    depth_error: str


@dataclass
class DepthStepResult:
    shard: str
    videos: int
    ok: int
    failed: int
    failures: list[DepthFailure]
    frames: int
    seconds: float
    """From the start of the step to this shard's commit."""
    model_load_s: float  # part of `seconds`: actor start and model load, once per step
    bytes_total: int
    version: int
    model: dict
    unchanged: bool = False
    """Depth was already there with the same settings; nothing was written."""
    checks: Verdicts = field(default_factory=dict)
    preview_png: bytes | None = None


def depth_step(shard: str, **kwargs: Any) -> DepthStepResult:
    """Depth for one shard's ok videos, in one commit. Keyword arguments are those of `depth_shards`."""
    kwargs.setdefault("skip_committed", False)
    (result,) = depth_shards([shard], raise_errors=True, **kwargs)
    if not isinstance(result, ShardFailure):
        return result
    raise RuntimeError(result.error)  # not reached: with `raise_errors` a failed shard raises


_DEPTH_STATE = [
    "video_id",
    "shard",
    "processed_at",
    "depth_status",
    "depth_sampling",
    "depth_encoding",
    "depth_model",
    "depth_processed_at",
]


def depth_shards(
    shards: Sequence[str],
    *,
    lance_uri: str,
    storage_options: dict | None,
    model: DepthModelConfig,
    executor: DepthExecutor,
    sampling: FrameSampling = FrameSampling(),
    encoding: DepthEncoding = DepthEncoding(),
    pretrained: bool = True,
    skip_committed: bool = True,
    log: Callable[[str], None] = print,
    raise_errors: bool = False,
) -> Iterator[DepthStepResult | ShardFailure]:
    """Depth for the ok videos of many shards through one stream of `executor` (the model loaded
    once), each shard written in one commit as soon as its last video is done; results in completion
    order.

    A shard with no rows in the table is a ShardFailure (`raise_errors` raises UpstreamMissing). With
    `skip_committed`, a shard whose ok videos all have depth made after them with the same model,
    sampling and codec is not done again (its result has `unchanged` set).
    """
    started = time.monotonic()
    state = read_shard_state(
        shards,
        lance_uri=lance_uri,
        storage_options=storage_options,
        columns=_DEPTH_STATE,
        asset="depth_maps",
        add_columns=ensure_depth_columns,
        raise_errors=raise_errors,
    )
    yield from state.missing
    if state.ds is None:
        return
    ds = state.ds
    run = _DepthRun(
        ds,
        lance_uri=lance_uri,
        storage_options=storage_options,
        sampling=sampling,
        pretrained=pretrained,
        log=log,
        raise_errors=raise_errors,
        started=started,
    )
    settings = (sampling.describe(), encoding.codec, model.model_id)
    todo: dict[str, list[dict]] = {}
    for shard, rows in state.rows.items():
        if skip_committed and rows and all(_has_depth_from(r, settings) for r in rows):
            log(f"shard {shard}: depth already made with these settings for all {len(rows)} ok videos; skipped")
            yield run.unchanged(shard)
        elif not rows:
            yield run.nothing_to_do(shard)
        else:
            todo[shard] = rows
    jobs = [
        DepthJob(video_id=r["video_id"], row_id=r["_rowid"], shard=r["shard"]) for rows in todo.values() for r in rows
    ]
    if not jobs:
        return
    log(f"depth for {len(jobs)} ok videos of {len(todo)} shard(s) at table version {ds.version}")
    stream = executor.stream(
        DepthRequest(
            jobs=jobs,
            uri=lance_uri,
            version=ds.version,
            storage_options=storage_options,
            model=model,
            sampling=sampling,
            encoding=encoding,
        )
    )
    yield from run.follow(stream, {shard: len(rows) for shard, rows in todo.items()}, jobs)


class _DepthRun:
    """One call of `depth_shards` once the table is read: commits each shard when its last video is
    done, and describes it.
    """

    def __init__(
        self,
        ds: lance.LanceDataset,
        *,
        lance_uri: str,
        storage_options: dict | None,
        sampling: FrameSampling,
        pretrained: bool,
        log: Callable[[str], None],
        raise_errors: bool,
        started: float,
    ) -> None:
        self._ds, self._uri, self._storage_options = ds, lance_uri, storage_options
        self._sampling, self._pretrained = sampling, pretrained
        self._log, self._raise_errors, self._started = log, raise_errors, started

    def unchanged(self, shard: str) -> DepthStepResult:
        return self._result(shard, rows=[], started=time.monotonic(), stream=None, unchanged=True)

    def nothing_to_do(self, shard: str) -> DepthStepResult:
        return self._result(shard, rows=[], started=self._started, stream=None)

    def follow(
        self, stream: DepthStream, expected: dict[str, int], jobs: list[DepthJob]
    ) -> Iterator[DepthStepResult | ShardFailure]:
        """Collect the stream's rows by shard; commit each shard when it has all `expected` rows."""
        shard_of = {job.video_id: job.shard for job in jobs}
        done: dict[str, list[dict]] = {s: [] for s in expected}
        progress = Progress(self._log, "depth", "video", len(jobs))
        for row in stream:
            shard = shard_of[row["video_id"]]
            row["depth_pretrained"] = self._pretrained
            done[shard].append(row)
            if row["depth_status"] != "ok":
                self._log(f"shard {shard}: depth failed: {row['depth_error']}")
            progress.advance(frames=row.get("depth_frames") or 0)
            count = len(done[shard])
            if count % 10 == 0 or count == expected[shard]:
                self._log(f"shard {shard}: depth done for {count}/{expected[shard]} videos")
            if count == expected[shard]:
                yield self._commit(shard, done.pop(shard), stream)

    def _commit(self, shard: str, rows: list[dict], stream: DepthStream) -> DepthStepResult | ShardFailure:
        try:
            return self._result(shard, rows=rows, started=self._started, stream=stream)
        except Exception as exc:  # this shard's commit failed; the others go on
            if self._raise_errors:
                raise
            return ShardFailure(shard, f"{type(exc).__name__}: shard {shard}: {exc}")

    def _result(
        self, shard: str, *, rows: list[dict], started: float, stream: DepthStream | None, unchanged: bool = False
    ) -> DepthStepResult:
        """Commit one shard's depth rows (if any), then check what was committed."""
        ds, uri, storage_options = self._ds, self._uri, self._storage_options
        version = write_depth(uri, rows, storage_options) if rows else ds.version
        committed = open_table(uri, storage_options, version=version) if rows else ds
        failures = [
            DepthFailure(video_id=r["video_id"], depth_error=r["depth_error"])
            for r in rows
            if r["depth_status"] != "ok"
        ]
        result = DepthStepResult(
            shard=shard,
            videos=len(rows),
            ok=len(rows) - len(failures),
            failed=len(failures),
            failures=failures,
            frames=sum(r.get("depth_frames") or 0 for r in rows),
            seconds=time.monotonic() - started,
            model_load_s=stream.model_load_s if stream else 0.0,
            bytes_total=sum(len(r.get("depth") or b"") for r in rows),
            version=version,
            model=stream.model if stream else {},
            unchanged=unchanged,
        )
        result.checks = check_shard_depth(committed, shard, self._sampling)
        result.preview_png = shard_preview(committed, shard)
        return result


def _has_depth_from(row: dict, settings: tuple[str, str, str]) -> bool:
    made = row["depth_processed_at"]
    return (
        row["depth_status"] == "ok"
        and (row["depth_sampling"], row["depth_encoding"], row["depth_model"]) == settings
        and made is not None
        and row["processed_at"] is not None
        and made >= row["processed_at"]
    )


def _ok_rows_with_depth(ds: lance.LanceDataset, shard: str) -> list[dict]:
    columns = [
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
    return ds.to_table(
        columns=columns, filter=f"shard = {sql_literal(shard)} AND status = 'ok'", with_row_id=True
    ).to_pylist()


def check_shard_depth(ds: lance.LanceDataset, shard: str, sampling: FrameSampling) -> Verdicts:
    """Read the committed depth back and check it against the videos it came from."""
    rows = _ok_rows_with_depth(ds, shard)
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
        tolerance = 1e-3 * max(abs(row["depth_hi"] - row["depth_lo"]), 1e-6)
        if (
            not np.isfinite(depth).all()
            or depth.min() < row["depth_lo"] - tolerance
            or depth.max() > row["depth_hi"] + tolerance
        ):
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
