"""depth_maps for whole shards: a tiny Depth Anything saved with save_pretrained, real Ray (the Ray
executors), real Lance."""

from __future__ import annotations

import shutil

import lance
import numpy as np
import pytest

from kinetics_assets.depth.model import DepthModelConfig
from kinetics_assets.distributed.options import RayStageOptions
from kinetics_assets.distributed.stage_executor import RayStageExecutor
from kinetics_assets.distributed.transcode import RayTranscodeExecutor, RayTranscodeOptions
from kinetics_assets.ingest.shards import Shard
from kinetics_assets.media.decode import decode_frames
from kinetics_assets.media.depth_codec import DepthEncoding, decode_depth
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.qa.previews import shard_preview
from kinetics_assets.stages import DepthStage, run_column_stage, run_column_stage_shard
from kinetics_assets.steps.failures import UpstreamMissing
from kinetics_assets.steps.transcode import transcode_step
from tests.harness.shards import build_shard
from tests.harness.tiny_depth import save_tiny_depth_model

pytestmark = pytest.mark.e2e

TRANSCODE = RayTranscodeExecutor(options=RayTranscodeOptions(max_in_flight=2))
DEPTH_2 = RayStageExecutor(options=RayStageOptions(max_in_flight=2))
DEPTH_3 = RayStageExecutor(options=RayStageOptions(max_in_flight=3))


def _stage(model: DepthModelConfig, kwargs: dict) -> DepthStage:
    settings = {k: kwargs.pop(k) for k in ("sampling", "encoding") if k in kwargs}
    return DepthStage(model=model, **settings)


def depth_step(shard: str, *, model: DepthModelConfig, **kwargs):
    return run_column_stage_shard(shard, _stage(model, kwargs), **kwargs)


def depth_shards(shards: list[str], *, model: DepthModelConfig, **kwargs):
    return run_column_stage(_stage(model, kwargs), shards, **kwargs)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = save_tiny_depth_model(tmp_path_factory.mktemp("model") / "tiny")
    return DepthModelConfig(local_path=str(folder), batch_size=4, input_short_side=126)


@pytest.fixture(scope="module")
def transcoded_once(ray_local, tmp_path_factory):
    """One shard transcoded on Ray for the module; each test gets a copy of its table (`transcoded`)."""
    root = tmp_path_factory.mktemp("transcoded")
    spec = build_shard(root, "part_0", n_clips=3, layout="flat", with_defects=True)
    uri = str(root / "t.lance")
    shard = Shard("part_0", "archive", ("http://127.0.0.1:1/part_0.tar.gz",), "k400", "part_0")
    transcode_step(
        shard,
        spec.archive_path,
        lance_uri=uri,
        storage_options=None,
        annotations={},
        config=TranscodeConfig(preset="ultrafast"),
        executor=TRANSCODE,
        log=lambda _: None,
    )
    return spec, uri


@pytest.fixture
def transcoded(transcoded_once, tmp_path):
    """A fresh copy of the module's transcoded table: each test writes its own depth into it."""
    spec, uri = transcoded_once
    copy = tmp_path / "t.lance"
    shutil.copytree(uri, copy)
    return spec, str(copy)


def _run(uri, model, **kwargs):
    return depth_step(
        "part_0", lance_uri=uri, storage_options=None, model=model, executor=DEPTH_3, log=lambda _: None, **kwargs
    )


def test_depth_for_every_ok_video_aligned_with_its_frames(transcoded, tiny_model):
    spec, uri = transcoded
    version_before = lance.dataset(uri).version
    video_files_before = _video_files(uri)
    result = _run(uri, tiny_model)
    assert all(v.passed for v in result.checks.values()), result.checks
    assert result.ok == len(spec.good_ids)
    assert result.failed == 0
    assert shard_preview(lance.dataset(uri, version=result.version), "part_0").startswith(b"\x89PNG")
    assert 0 < result.model_load_s < result.seconds  # the one-time load is reported apart
    ds = lance.dataset(uri)
    assert ds.version > version_before
    # Depth was added beside the videos: every fragment's video data file is still there, unchanged.
    assert video_files_before <= _video_files(uri)
    rows = ds.to_table(
        filter="status = 'ok'",
        columns=[
            "video_id",
            "frames",
            "width",
            "height",
            "depth",
            "depth_lo",
            "depth_hi",
            "depth_frames",
            "depth_timestamps",
            "depth_pretrained",
        ],
        with_row_id=True,
    ).to_pylist()
    failed = ds.to_table(filter="status = 'failed'", columns=["depth_status"]).to_pylist()
    assert failed
    assert all(r["depth_status"] is None for r in failed)  # only ok rows get depth
    for row in rows:
        depth = decode_depth(row["depth"], row["depth_lo"], row["depth_hi"])
        assert depth.shape == (row["frames"], row["height"], row["width"])
        assert depth.dtype == np.float32
        video = ds.take_blobs("video", ids=[row["_rowid"]])[0].read()
        _, times = decode_frames(video)
        np.testing.assert_allclose(row["depth_timestamps"], times, atol=1e-3)
        assert row["depth_pretrained"] is True


def test_depth_rerun_is_idempotent(transcoded, tiny_model):
    _, uri = transcoded
    _run(uri, tiny_model)
    first = lance.dataset(uri).to_table(columns=["video_id", "depth_lo", "depth_frames"]).sort_by("video_id")
    _run(uri, tiny_model)
    ds = lance.dataset(uri)
    second = ds.to_table(columns=["video_id", "depth_lo", "depth_frames"]).sort_by("video_id")
    assert first.equals(second)
    assert ds.count_rows() == len(first)


@pytest.mark.parametrize(("sampling", "expected"), [("fps=5", "fps"), ("count=4", "count")])
def test_sampling_policies(transcoded, tiny_model, sampling, expected):
    _, uri = transcoded
    policy = FrameSampling.parse(sampling)
    result = _run(uri, tiny_model, sampling=policy, encoding=DepthEncoding(codec="ffv1_gray16"))
    assert all(v.passed for v in result.checks.values()), result.checks
    rows = (
        lance.dataset(uri)
        .to_table(filter="status = 'ok'", columns=["frames", "fps", "depth_frames", "depth_sampling"])
        .to_pylist()
    )
    for row in rows:
        assert row["depth_sampling"] == sampling
        if expected == "count":
            assert row["depth_frames"] == min(4, row["frames"])
        else:
            assert row["depth_frames"] < row["frames"]


def test_missing_upstream_names_the_fix(tmp_path, tiny_model):
    with pytest.raises(UpstreamMissing, match=r"part_0.*transcoded_videos.*'\*depth_maps'"):
        _run(str(tmp_path / "none.lance"), tiny_model)


def _video_files(uri: str) -> set[str]:
    return {f.metadata.files[0].path for f in lance.dataset(uri).get_fragments()}


def test_two_shards_get_depth_at_once(ray_local, tiny_model, tmp_path):
    import threading

    uri = str(tmp_path / "t.lance")
    for name, seed in (("part_1", 1), ("part_2", 2)):
        spec = build_shard(tmp_path / name, name, n_clips=2, layout="flat", with_defects=False, seed=seed)
        transcode_step(
            Shard(name, "archive", ("http://127.0.0.1:1/x.tar.gz",), "k400", name),
            spec.archive_path,
            lance_uri=uri,
            storage_options=None,
            annotations={},
            config=TranscodeConfig(preset="ultrafast"),
            executor=TRANSCODE,
            log=lambda _: None,
        )
    results, errors = {}, []

    def run(name):
        try:
            results[name] = depth_step(
                name, lance_uri=uri, storage_options=None, model=tiny_model, executor=DEPTH_2, log=lambda _: None
            )
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("part_1", "part_2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    table = lance.dataset(uri).to_table(columns=["shard", "depth_status"])
    assert table["depth_status"].to_pylist() == ["ok"] * 4
    assert sorted(table["shard"].to_pylist()) == ["part_1"] * 2 + ["part_2"] * 2


def test_many_shards_share_one_model_load_and_a_missing_one_fails_alone(ray_local, tmp_path, tiny_model):
    from kinetics_assets.steps.failures import ShardFailure

    uri = str(tmp_path / "t.lance")
    for i in range(2):
        spec = build_shard(tmp_path / f"s{i}", f"part_{i}", n_clips=2, with_defects=False, seed=i)
        transcode_step(
            Shard(f"part_{i}", "archive", ("http://127.0.0.1:1/x.tar.gz",), "k400", f"part_{i}"),
            spec.archive_path,
            lance_uri=uri,
            storage_options=None,
            annotations={},
            config=TranscodeConfig(preset="ultrafast"),
            executor=TRANSCODE,
            log=lambda _: None,
        )
    lines: list[str] = []
    results = list(
        depth_shards(
            ["part_0", "part_9", "part_1"],
            lance_uri=uri,
            storage_options=None,
            model=tiny_model,
            sampling=FrameSampling.parse("count=2"),
            executor=DEPTH_3,
            log=lines.append,
        )
    )
    by_shard = {r.shard: r for r in results}
    assert isinstance(by_shard["part_9"], ShardFailure)
    assert "transcoded_videos" in by_shard["part_9"].error
    done = [by_shard["part_0"], by_shard["part_1"]]
    assert all(r.ok == 2 and all(v.passed for v in r.checks.values()) for r in done)
    # One stream, one model load: both shards report the same load, and each has its own commit.
    assert done[0].model_load_s == done[1].model_load_s > 0
    assert done[0].version != done[1].version
    assert sum("model actor" in line or "ok videos of 2 shard(s)" in line for line in lines) == 1
    # Same model, sampling and codec: nothing to do the second time.
    again = list(
        depth_shards(
            ["part_0", "part_1"],
            lance_uri=uri,
            storage_options=None,
            model=tiny_model,
            sampling=FrameSampling.parse("count=2"),
            executor=DEPTH_3,
            log=lines.append,
        )
    )
    assert [r.unchanged for r in again] == [True, True]
    assert lance.dataset(uri).version == max(r.version for r in done)
