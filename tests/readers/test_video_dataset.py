"""LanceClipDataset and the table reader on a real Lance table of transcoded clips.

Every stored frame carries its own frame index and its video's number as black/white blocks (see
`coded_pattern`), so a test reads back which frame it got instead of trusting the reader's metadata.
Depth is written straight into the table's depth columns (lossless FFV1) with value = the RGB frame
index it belongs to (+200 on the right half), so depth/RGB alignment is checked frame by frame and
pixel region by pixel region.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import pickle
from dataclasses import dataclass

import lance
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from kinetics_assets.media.decode import frame_timestamps
from kinetics_assets.media.depth_codec import DepthEncoding, encode_depth
from kinetics_assets.media.sampling import ClipSampling, FrameSampling, nearest_frames
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.readers.table_clips import BadVideoError, release_classes
from kinetics_assets.readers.torch_dataset import ClipTransform, LanceClipDataset, clip_loader
from kinetics_assets.steps.transcode_clip import ClipJob, process_clip
from kinetics_assets.table import commit_shard, ensure_depth_columns, write_depth, write_shard_fragments
from tests.harness.clips import frame_pattern
from tests.harness.exotic_clips import exotic_clip_bytes

WIDTH, HEIGHT = 160, 96
BLOCKS_PER_ROW = 10  # a block is HEIGHT/6 = 16 px square
DEPTH_STEP = 200.0  # added to the depth of the right half of every depth frame


# --------------------------------------------------------------------------------------------------
# Self-describing clips and a table built from them


def coded_pattern(video_no: int):
    """Frames whose top block row spells the frame index and second row the video number (bits)."""

    def pattern(index: int, width: int, height: int) -> np.ndarray:
        img = frame_pattern(index, width, height) // 2 + 64
        b = height // 6
        for bit in range(BLOCKS_PER_ROW):
            img[0:b, bit * b : (bit + 1) * b] = 255 if (index >> bit) & 1 else 0
            img[b : 2 * b, bit * b : (bit + 1) * b] = 255 if (video_no >> bit) & 1 else 0
        return img

    return pattern


def read_code(frame: np.ndarray) -> tuple[int, int]:
    """(frame index, video number) spelled by an uncropped frame [H,W,3] of any scale."""
    b = frame.shape[0] / 6
    r = max(1, int(b / 4))
    values = []
    for row in (0, 1):
        value = 0
        for bit in range(BLOCKS_PER_ROW):
            cy, cx = int((row + 0.5) * b), int((bit + 0.5) * b)
            if frame[cy - r : cy + r + 1, cx - r : cx + r + 1].mean() > 128:
                value |= 1 << bit
        values.append(value)
    return values[0], values[1]


@dataclass(frozen=True)
class VideoSpec:
    video_id: str
    shard: str
    label: str | None
    frames: int
    fps: int
    video_no: int
    depth: str | None = "every"  # FrameSampling text, or None for no depth


ULTRAFAST = TranscodeConfig(preset="ultrafast")


def transcoded_row(spec: VideoSpec, release: str = "custom", config: TranscodeConfig = ULTRAFAST) -> dict:
    data = exotic_clip_bytes(
        container_format="mp4",
        width=WIDTH,
        height=HEIGHT,
        fps=spec.fps,
        frames=spec.frames,
        pattern=coded_pattern(spec.video_no),
    )
    job = ClipJob(
        spec.video_id,
        spec.shard,
        release,
        f"{spec.video_id}.mp4",
        "file:///nowhere",
        spec.label,
        "val",
        None,
        None,
        None,
    )
    row = process_clip(job, data, config)
    assert row.status == "ok", row.error_message
    return dataclasses.asdict(row)  # the fixtures below derive damaged rows from it as mappings


def depth_row(spec: VideoSpec, video: bytes) -> dict:
    """Depth for `spec` with value = RGB frame index (+DEPTH_STEP on the right half)."""
    times = frame_timestamps(video)
    sampling = FrameSampling.parse(spec.depth)
    kept = sampling.indices(times)
    depth = np.repeat(kept.astype(np.float32)[:, None, None], HEIGHT, axis=1).repeat(WIDTH, axis=2)
    depth[:, :, WIDTH // 2 :] += DEPTH_STEP
    encoded = encode_depth(depth, times[kept], DepthEncoding(codec="ffv1_gray16"))
    return {
        "video_id": spec.video_id,
        "depth": encoded.data,
        "depth_status": "ok",
        "depth_lo": encoded.lo,
        "depth_hi": encoded.hi,
        "depth_frames": encoded.frames,
        "depth_width": WIDTH,
        "depth_height": HEIGHT,
        "depth_timestamps": times[kept].tolist(),
        "depth_sampling": sampling.describe(),
        "depth_encoding": "ffv1_gray16",
    }


def build_table(uri: str, specs: list[VideoSpec], *, extra=None, release: str = "custom") -> dict[str, dict]:
    """Transcode and commit `specs` (one commit per shard), then add depth where specs ask for it.

    `extra(rows)` may return more rows (e.g. damaged ones) to commit with them. Returns the rows by
    video id.
    """
    rows = {s.video_id: transcoded_row(s, release) for s in specs}
    rows.update({r["video_id"]: r for r in (extra(rows) if extra else [])})
    for shard in sorted({r["shard"] for r in rows.values()}):
        shard_rows = [r for r in rows.values() if r["shard"] == shard]
        commit_shard(uri, shard, write_shard_fragments(shard_rows, uri))
    with_depth = [s for s in specs if s.depth]
    if with_depth:
        ensure_depth_columns(uri)
        write_depth(uri, [depth_row(s, rows[s.video_id]["video"]) for s in with_depth])
    return rows


def bad_rows(rows: dict[str, dict]) -> list[dict]:
    """Shard "bad": garbage bytes and a truncated video, both with status ok, and a failed row."""
    good = rows["vid_a"]
    return [
        dict(good, video_id="bad_garbage", shard="bad", video=b"\x00\x01 this is not a video " * 50),
        # A truncated copy demuxes and decodes up to where it stops: only the frame count betrays it.
        dict(good, video_id="bad_truncated", shard="bad", video=good["video"][: len(good["video"]) // 2]),
        dict(
            good,
            video_id="bad_failed",
            shard="bad",
            status="failed",
            video=None,
            error_type="decode_error",
            error_message="made up",
        ),
    ]


SPECS = [
    VideoSpec("vid_a", "s1", "abseiling", 60, 25, 1),
    VideoSpec("vid_b", "s1", "air drumming", 80, 25, 2),
    VideoSpec("vid_c", "s1", "abseiling", 10, 25, 3),  # shorter than a 16-frame clip
    VideoSpec("vid_d", "s2", "playing guitar", 90, 30, 4, depth="fps=5"),
    VideoSpec("vid_e", "s2", "air drumming", 50, 25, 5, depth="fps=5"),
    VideoSpec("vid_f", "s2", None, 40, 25, 6, depth="fps=5"),  # no label
]
GOOD_SHARDS = ("s1", "s2")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("clips") / "videos.lance")
    return uri, build_table(uri, SPECS, extra=bad_rows)


SPEC_OF = {s.video_id: s for s in SPECS}


def assert_frames_are(item_video: np.ndarray, frame_indices, video_id: str) -> None:
    """Every frame [T,H,W,3] spells the index it is reported as, and the right video."""
    for frame, index in zip(item_video, frame_indices, strict=True):
        assert read_code(frame) == (int(index), SPEC_OF[video_id].video_no)


def hwc(item: dict) -> np.ndarray:
    return item["video"].permute(0, 2, 3, 1).numpy()


# --------------------------------------------------------------------------------------------------
# The dataset


def test_items_are_the_asked_frames_with_labels_and_timestamps(table):
    uri, _rows = table
    ds = LanceClipDataset(
        uri, sampling=ClipSampling(num_frames=6, stride=2, start="random"), shards=GOOD_SHARDS, with_depth=False, seed=3
    )
    assert sorted(ds.video_ids) == sorted(SPEC_OF)
    assert ds.classes == ["abseiling", "air drumming", "playing guitar"]  # custom release: sorted table labels
    for i in range(len(ds)):
        item = ds[i]
        spec = SPEC_OF[item["video_id"]]
        assert item["video"].dtype == torch.uint8
        assert item["video"].shape == (6, 3, HEIGHT, WIDTH)
        assert item["frame_indices"].dtype == torch.int64
        assert item["timestamps"].dtype == torch.float64
        assert_frames_are(hwc(item), item["frame_indices"], spec.video_id)
        expected = np.minimum(item["frame_indices"][0].item() + 2 * np.arange(6), spec.frames - 1)
        if spec.frames >= 11:
            assert item["frame_indices"].tolist() == expected.tolist()
        np.testing.assert_allclose(item["timestamps"].numpy(), item["frame_indices"].numpy() / spec.fps, atol=1e-3)
        assert item["label"] == (ds.classes.index(spec.label) if spec.label else -1)
    short = ds[ds.video_ids.index("vid_c")]
    assert short["frame_indices"].tolist() == [0, 2, 4, 6, 8, 8]  # padded by repeating the last frame


def test_random_starts_are_reproducible_per_epoch_and_uniform_is_fixed(table):
    uri, _ = table
    sampling = ClipSampling(num_frames=4, start="random")

    def starts(epoch: int, seed: int = 0) -> list[int]:
        ds = LanceClipDataset(
            uri, sampling=sampling, shards=["s1"], labels=["air drumming"], with_depth=False, seed=seed
        )
        ds.set_epoch(epoch)
        return [ds[0]["frame_indices"][0].item() for _ in range(2)]

    first = starts(0)
    assert first[0] == first[1] == starts(0)[0]
    assert len({starts(e)[0] for e in range(8)}) > 1  # new epochs, new clips (77 possible starts)
    uniform = LanceClipDataset(
        uri,
        sampling=ClipSampling(num_frames=8, start="uniform", clips_per_video=3),
        shards=["s1"],
        labels=["air drumming"],
        with_depth=False,
    )
    assert len(uniform) == 3
    assert [uniform[k]["frame_indices"][0].item() for k in range(3)] == [0, 36, 72]  # 80 frames, starts 0..72
    assert [uniform[k]["clip"] for k in range(3)] == [0, 1, 2]
    fps = LanceClipDataset(
        uri,
        sampling=ClipSampling(num_frames=5, fps=10, start="centre"),
        shards=["s2"],
        labels=["playing guitar"],
        with_depth=False,
    )[0]
    np.testing.assert_allclose(np.diff(fps["timestamps"].numpy()), 0.1, atol=1e-3)  # 30 fps source
    assert_frames_are(hwc(fps), fps["frame_indices"], "vid_d")


def test_depth_is_aligned_with_the_rgb_frames(table):
    uri, _ = table
    every = LanceClipDataset(uri, sampling=ClipSampling(num_frames=5, stride=3), shards=["s1"])
    assert every.with_depth  # "auto": every selected row has depth
    for i in range(len(every)):
        item = every[i]
        depth = item["depth"].numpy()
        assert depth.shape == (5, HEIGHT, WIDTH)
        assert depth.dtype == np.float32
        index = item["frame_indices"].numpy()[:, None].astype(np.float32)
        np.testing.assert_allclose(depth[:, :, 0], np.broadcast_to(index, (5, HEIGHT)), atol=0.01)
        np.testing.assert_allclose(depth[:, :, -1], np.broadcast_to(index + DEPTH_STEP, (5, HEIGHT)), atol=0.01)
        np.testing.assert_allclose(item["depth_timestamps"].numpy(), item["timestamps"].numpy(), atol=1e-4)
    # Depth stored at 5 fps: each RGB frame gets the depth frame nearest in time.
    subset = LanceClipDataset(uri, sampling=ClipSampling(num_frames=8, start="random"), shards=["s2"], seed=1)
    for i in range(len(subset)):
        item = subset[i]
        spec = SPEC_OF[item["video_id"]]
        times = np.arange(spec.frames) / spec.fps
        kept = FrameSampling.parse("fps=5").indices(times)
        expected = kept[nearest_frames(times[kept], item["timestamps"].numpy())]
        np.testing.assert_allclose(item["depth"].numpy()[:, 0, 0], expected, atol=0.01)
        np.testing.assert_allclose(item["depth_timestamps"].numpy(), times[expected], atol=1e-3)
        # Within half the depth interval, except past the last depth frame.
        gap = np.abs(item["depth_timestamps"].numpy() - item["timestamps"].numpy())
        assert np.all((gap <= 0.1 + 1e-3) | (item["timestamps"].numpy() > times[kept[-1]]))


def test_transforms_apply_to_rgb_and_depth_alike(table):
    uri, _ = table
    sampling = ClipSampling(num_frames=3, start="centre")
    base = {"sampling": sampling, "shards": ["s1"], "labels": ["air drumming"]}
    resized = LanceClipDataset(uri, transform=ClipTransform(short_side=48), **base)[0]
    assert resized["video"].shape == (3, 3, 48, 80)
    assert resized["depth"].shape == (3, 48, 80)
    assert_frames_are(hwc(resized), resized["frame_indices"], "vid_b")
    # Random crop: the depth's step edge must sit where the RGB crop says the frame's middle is.
    full = LanceClipDataset(uri, **base)[0]
    for seed in range(4):
        cropped = LanceClipDataset(uri, transform=ClipTransform(crop=(40, 60), crop_mode="random"), seed=seed, **base)
        item = cropped[0]
        assert item["video"].shape == (3, 3, 40, 60)
        assert item["depth"].shape == (3, 40, 60)
        video, whole = item["video"].numpy(), full["video"].numpy()
        windows = [
            (top, left)
            for top in range(HEIGHT - 40 + 1)
            for left in range(WIDTH - 60 + 1)
            if np.array_equal(whole[0, 0, top, left : left + 60], video[0, 0, 0])
            and np.array_equal(whole[:, :, top : top + 40, left : left + 60], video)
        ]
        assert windows, "the crop is no window of the uncropped clip"
        _top, left = windows[0]
        right_half = np.arange(left, left + 60) >= WIDTH // 2
        expected = full["frame_indices"].numpy()[:, None] + DEPTH_STEP * right_half[None, :]
        np.testing.assert_allclose(item["depth"].numpy()[:, 0, :], expected, atol=0.01)
    norm = LanceClipDataset(
        uri, transform=ClipTransform(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)), channels_last=True, **base
    )[0]
    assert norm["video"].dtype == torch.float32
    assert norm["video"].shape == (3, HEIGHT, WIDTH, 3)
    raw = LanceClipDataset(uri, **base)[0]["video"].permute(0, 2, 3, 1).to(torch.float32)
    torch.testing.assert_close(norm["video"], (raw / 255 - 0.5) / 0.25)
    with pytest.raises(ValueError, match="larger than the frames"):
        LanceClipDataset(uri, transform=ClipTransform(crop=200), **base)[0]


def test_dataloader_with_two_workers_and_shuffle(table):
    uri, _ = table
    ds = LanceClipDataset(
        uri,
        sampling=ClipSampling(num_frames=4, stride=2, clips_per_video=2),
        shards=GOOD_SHARDS,
        with_depth=False,
        seed=5,
    )
    ds.set_epoch(2)
    reference = {(ds[i]["video_id"], ds[i]["clip"]): ds[i]["frame_indices"].tolist() for i in range(len(ds))}
    loader = clip_loader(ds, batch_size=3, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    seen = {}
    for batch in loader:
        assert isinstance(batch["video_id"], list)
        assert batch["video"].shape[1:] == (4, 3, HEIGHT, WIDTH)
        for j, video_id in enumerate(batch["video_id"]):
            key = (video_id, int(batch["clip"][j]))
            assert key not in seen
            seen[key] = batch["frame_indices"][j].tolist()
            assert_frames_are(batch["video"][j].permute(0, 2, 3, 1).numpy(), seen[key], video_id)
    # Workers give exactly what the main process gives: same items, same random clips.
    assert seen == reference


def _read_first(ds, queue):
    try:
        ds[0]
        queue.put("read")
    except RuntimeError as exc:
        queue.put(str(exc))


def test_forked_copy_refuses_lance_instead_of_risking_a_deadlock(table):
    uri, _ = table
    ds = LanceClipDataset(uri, sampling=ClipSampling(num_frames=2), shards=["s1"], with_depth=False)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_first, args=(ds, queue))
    child.start()
    message = queue.get(timeout=60)
    child.join(timeout=60)
    assert "forked from a process that uses Lance" in message
    assert "clip_loader" in message


def test_pickled_state_holds_no_lance_handle(table):
    # What a forkserver/spawn worker receives: a small state, no handle, and a copy that opens the
    # same pinned version on first use.
    uri, _ = table
    ds = LanceClipDataset(uri, sampling=ClipSampling(num_frames=2, start="centre"), shards=["s2"], with_depth=True)
    first = ds[0]
    assert ds._ds is not None
    assert ds.__getstate__()["_ds"] is None
    data = pickle.dumps(ds)
    assert len(data) < 100_000
    assert b"LanceDataset" not in data
    copy = pickle.loads(data)  # noqa: S301 - the bytes this test just pickled
    assert copy._ds is None
    again = copy[0]
    assert copy._ds is not None
    assert copy._ds.version == ds.version
    torch.testing.assert_close(again["video"], first["video"])
    torch.testing.assert_close(again["depth"], first["depth"])


def test_distributed_sampler_splits_disjoint_and_complete(table):
    uri, _ = table
    ds = LanceClipDataset(
        uri, sampling=ClipSampling(num_frames=2, clips_per_video=2), shards=GOOD_SHARDS, with_depth=False
    )
    assert len(ds) == 12
    parts = []
    for rank in (0, 1):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(1)
        loader = DataLoader(ds, batch_size=2, sampler=sampler)
        parts.append({(v, int(c)) for batch in loader for v, c in zip(batch["video_id"], batch["clip"], strict=True)})
    assert len(parts[0]) == len(parts[1]) == 6
    assert not parts[0] & parts[1]
    assert parts[0] | parts[1] == {(s.video_id, c) for s in SPECS for c in (0, 1)}


def test_bad_rows_raise_or_skip(table, caplog):
    uri, _ = table
    sampling = ClipSampling(num_frames=2, start="centre")
    for video_id, cause in (
        ("bad_garbage", "Invalid data"),
        ("bad_truncated", "the table says 60"),
        ("bad_failed", "status is 'failed'"),
    ):
        strict = LanceClipDataset(
            uri, sampling=sampling, shards=["bad"], status=None, where=f"video_id = '{video_id}'", bad_rows="raise"
        )
        with pytest.raises(BadVideoError, match=f"video {video_id} .*{cause}"):
            strict[0]
    # Skip: the bad rows come first in this selection; the next good row stands in.
    lenient = LanceClipDataset(
        uri, sampling=sampling, shards=["bad", "s1"], status=None, labels=["abseiling"], with_depth=False
    )
    assert len(lenient) == 5
    with caplog.at_level(logging.WARNING, logger="kinetics_assets.readers.torch_dataset"):
        items = [lenient[i] for i in range(len(lenient))]
    assert {item["video_id"] for item in items} <= {"vid_a", "vid_c"}
    assert all(item["video"].shape == (2, 3, HEIGHT, WIDTH) for item in items)
    warned = " ".join(r.getMessage() for r in caplog.records)
    for video_id in ("bad_garbage", "bad_truncated", "bad_failed"):
        assert f"video {video_id}" in warned
    only_bad = LanceClipDataset(uri, sampling=sampling, shards=["bad"], status=None)
    with pytest.raises(RuntimeError, match="no readable video among 3 rows"):
        only_bad[0]
    # The default status filter leaves the failed row out entirely.
    assert "bad_failed" not in LanceClipDataset(uri, sampling=sampling, shards=["bad"]).video_ids


def test_filters(table):
    uri, _ = table
    sampling = ClipSampling(num_frames=2)
    assert sorted(LanceClipDataset(uri, sampling=sampling, shards=["s2"]).video_ids) == ["vid_d", "vid_e", "vid_f"]
    assert sorted(LanceClipDataset(uri, sampling=sampling, labels=["air drumming"]).video_ids) == ["vid_b", "vid_e"]
    assert LanceClipDataset(uri, sampling=sampling, shards=GOOD_SHARDS, where="frames >= 80").video_ids == [
        "vid_b",
        "vid_d",
    ]
    assert LanceClipDataset(uri, sampling=sampling, shards=["nope"]).video_ids == []
    # Mixed depth (bad shard has none): "auto" serves none, True keeps only rows with depth.
    assert not LanceClipDataset(uri, sampling=sampling, status=None).with_depth
    with_depth = LanceClipDataset(uri, sampling=sampling, status=None, with_depth=True)
    assert sorted(with_depth.video_ids) == sorted(SPEC_OF)
    with pytest.raises(ValueError, match="cannot filter rows"):
        LanceClipDataset(uri, sampling=sampling, where="no_such_column = 1")


def test_pinned_version_ignores_later_writes(tmp_path):
    uri = str(tmp_path / "pinned.lance")
    first = [
        VideoSpec("p1", "s1", "abseiling", 30, 25, 7, depth=None),
        VideoSpec("p2", "s1", "zumba", 30, 25, 8, depth=None),
    ]
    build_table(uri, first, release="k400")
    ds = LanceClipDataset(uri, sampling=ClipSampling(num_frames=3, start="centre"))
    version = ds.version
    # k400 rows only: the bundled K400 class list gives the index.
    classes = release_classes("k400")
    assert ds.classes == classes
    assert {ds[i]["label"] for i in range(2)} == {
        classes.index("abseiling"),
        classes.index("zumba"),
    }
    # Replace the shard with other videos and add a shard: the pinned dataset still reads the old rows.
    build_table(
        uri,
        [
            VideoSpec("p3", "s1", "abseiling", 30, 25, 9, depth=None),
            VideoSpec("p4", "s9", "abseiling", 30, 25, 10, depth=None),
        ],
        release="k400",
    )
    assert lance.dataset(uri).version > version
    assert sorted(ds.video_ids) == ["p1", "p2"]
    for i in range(len(ds)):
        item = ds[i]
        assert read_code(hwc(item)[0])[1] == {"p1": 7, "p2": 8}[item["video_id"]]
    reopened = pickle.loads(pickle.dumps(ds))  # noqa: S301 - a worker's copy opens the same version
    assert reopened._dataset().version == version
    assert read_code(hwc(reopened[0])[0])[1] in (7, 8)
    assert sorted(LanceClipDataset(uri).video_ids) == ["p3", "p4"]
    assert sorted(LanceClipDataset(uri, version=version).video_ids) == ["p1", "p2"]
