"""The depth step's own logic with the in-process executor: no Ray, a tiny random Depth Anything
loaded with from_pretrained, a real Lance table of generated clips. The same step on Ray is tested in
tests/integration/test_ray_depth_step.py."""

from __future__ import annotations

import contextlib
import shutil

import lance
import pyarrow as pa
import pytest

from kinetics_assets.depth.model import DepthModelConfig
from kinetics_assets.ingest.shards import Shard
from kinetics_assets.media.depth_codec import DepthEncoding
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.qa.previews import shard_preview
from kinetics_assets.stages import (
    DepthRow,
    DepthStage,
    InProcessExecutor,
    StageShardResult,
    TableSnapshot,
    VideoTask,
    run_column_stage,
)
from kinetics_assets.stages.depth_checks import check_shard_depth
from kinetics_assets.steps.failures import ShardFailure
from kinetics_assets.steps.in_process_transcode import InProcessTranscodeExecutor
from kinetics_assets.steps.transcode import transcode_shards
from kinetics_assets.steps.transcode_source import ShardSource
from tests.harness.shards import build_shard
from tests.harness.tiny_depth import save_tiny_depth_model

SAMPLING = FrameSampling.parse("count=2")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> DepthModelConfig:
    folder = save_tiny_depth_model(tmp_path_factory.mktemp("model") / "tiny")
    return DepthModelConfig(local_path=str(folder), batch_size=4, input_short_side=126)


def _transcode(uri: str, specs) -> None:
    sources = [
        ShardSource(
            Shard(s.name, "archive", ("http://127.0.0.1:1/x.tar.gz",), "k400", s.name),
            (lambda path=s.archive_path: contextlib.nullcontext(path)),
            None,
        )
        for s in specs
    ]
    list(
        transcode_shards(
            sources,
            lance_uri=uri,
            storage_options=None,
            annotations={},
            config=TranscodeConfig(preset="ultrafast"),
            executor=InProcessTranscodeExecutor(),
            skip_committed=False,
            log=lambda _: None,
        )
    )


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return [build_shard(root / f"s{i}", f"part_{i}", n_clips=2, with_defects=(i == 0), seed=i) for i in range(2)]


@pytest.fixture(scope="module")
def transcoded(specs, tmp_path_factory) -> str:
    """part_0 (good and defective clips) and part_1, transcoded once for the module."""
    uri = str(tmp_path_factory.mktemp("table") / "t.lance")
    _transcode(uri, specs)
    return uri


@pytest.fixture
def uri(transcoded, tmp_path) -> str:
    """A copy of the transcoded table for one test to write depth into."""
    return str(shutil.copytree(transcoded, tmp_path / "t.lance"))


def _depth(
    uri: str,
    model: DepthModelConfig,
    shards: list[str],
    *,
    sampling: FrameSampling = SAMPLING,
    encoding: DepthEncoding = DepthEncoding(),
    **kwargs,
) -> dict[str, StageShardResult[DepthRow] | ShardFailure]:
    kwargs.setdefault("log", lambda _: None)
    stage = DepthStage(model=model, sampling=sampling, encoding=encoding)
    results = run_column_stage(
        stage, shards, lance_uri=uri, storage_options=None, executor=InProcessExecutor(), **kwargs
    )
    return {r.shard: r for r in results}


def test_each_shard_gets_depth_in_its_own_commit_from_one_model_load(uri, tiny_model, specs):
    before = lance.dataset(uri).version
    results = _depth(uri, tiny_model, ["part_0", "part_1"])
    first, second = results["part_0"], results["part_1"]
    assert before < first.version < second.version == lance.dataset(uri).version
    for result, spec in ((first, specs[0]), (second, specs[1])):
        assert all(v.passed for v in result.checks.values()), result.checks
        assert (result.videos, result.ok, result.failed, result.failures) == (len(spec.good_ids), 2, 0, [])
        assert sum(r.frames for r in result.rows) == 2 * 2
        assert all(r.data for r in result.rows)
        assert not result.unchanged
        assert shard_preview(lance.dataset(uri, version=result.version), result.shard).startswith(b"\x89PNG")
    assert first.model_load_s == second.model_load_s > 0  # loaded once for both shards
    assert first.model.revision == "local"
    rows = (
        lance.dataset(uri)
        .to_table(columns=["status", "depth_status", "depth_sampling", "depth_pretrained"])
        .to_pylist()
    )
    assert {(r["status"], r["depth_status"]) for r in rows} == {("ok", "ok"), ("failed", None)}
    assert {r["depth_sampling"] for r in rows if r["depth_status"]} == {"count=2"}
    assert all(r["depth_pretrained"] is True for r in rows if r["depth_status"])


def test_depth_is_skipped_only_where_it_is_newer_than_the_video_with_the_same_settings(uri, tiny_model, specs):
    _depth(uri, tiny_model, ["part_0", "part_1"])
    version = lance.dataset(uri).version
    again = _depth(uri, tiny_model, ["part_0", "part_1"])
    assert [r.unchanged for r in again.values()] == [True, True]
    assert lance.dataset(uri).version == version
    assert all(v.passed for v in again["part_0"].checks.values())
    # part_1 transcoded again: its videos are newer than their depth, so its depth is made again.
    _transcode(uri, specs[1:])
    redone = _depth(uri, tiny_model, ["part_0", "part_1"])
    assert (redone["part_0"].unchanged, redone["part_1"].unchanged, redone["part_1"].ok) == (True, False, 2)
    # Another sampling is other depth; skip_committed=False redoes it regardless.
    other = _depth(uri, tiny_model, ["part_0"], sampling=FrameSampling.parse("count=1"))
    assert not other["part_0"].unchanged
    assert sum(r.frames for r in other["part_0"].rows) == 2
    # So is another crf of the same codec: the stage's declared settings decide, not a hand-picked few.
    recoded = _depth(
        uri, tiny_model, ["part_0"], sampling=FrameSampling.parse("count=1"), encoding=DepthEncoding(crf=20)
    )
    assert not recoded["part_0"].unchanged
    same = _depth(uri, tiny_model, ["part_0"], sampling=FrameSampling.parse("count=1"), encoding=DepthEncoding(crf=20))
    assert same["part_0"].unchanged
    forced = _depth(uri, tiny_model, ["part_0"], skip_committed=False)
    assert not forced["part_0"].unchanged
    assert forced["part_0"].ok == 2


def test_a_shard_without_rows_fails_alone(uri, tiny_model):
    results = _depth(uri, tiny_model, ["part_0", "part_9", "part_1"])
    assert isinstance(results["part_9"], ShardFailure)
    assert "'*depth_maps'" in results["part_9"].error
    assert results["part_0"].ok == results["part_1"].ok == 2


def test_a_video_that_cannot_be_read_fails_alone(uri, tiny_model):
    ds = lance.dataset(uri)
    good = ds.to_table(columns=["video_id"], filter="status = 'ok'", with_row_id=True).to_pylist()[0]
    snapshot = TableSnapshot(uri=uri, version=ds.version)
    tasks = [
        VideoTask(video_id="gone", row_id=2**40, shard="part_0", duration_s=None, snapshot=snapshot),
        VideoTask(video_id=good["video_id"], row_id=good["_rowid"], shard="part_0", duration_s=None, snapshot=snapshot),
    ]
    run = InProcessExecutor().run(DepthStage(model=tiny_model, sampling=SAMPLING), tasks)
    gone, ok = list(run)
    assert gone.status == "failed"
    assert gone.error.startswith("gone: ")
    assert ok.status == "ok"
    assert ok.frames == 2
    assert run.model.revision == "local"


def test_the_result_records_and_checks_its_own_commit_not_a_later_one(uri, tiny_model, monkeypatch):
    # A concurrent run of the same shard fails every video and commits the moment this step's depth
    # write has landed: the result must still name and check the commit this step made.
    from lance.dataset import MergeInsertBuilder

    real_execute = MergeInsertBuilder.execute
    ok_ids = lance.dataset(uri).to_table(columns=["video_id"], filter="shard = 'part_1' AND status = 'ok'")
    failed = [
        {"video_id": v, "depth_status": "failed", "depth_error": "elsewhere"} for v in ok_ids["video_id"].to_pylist()
    ]
    later: list[int] = []

    def execute_then_a_later_run_commits(self, *args, **kwargs):
        stats = real_execute(self, *args, **kwargs)
        if not later:
            newest = lance.dataset(uri)
            builder = newest.merge_insert("video_id").when_matched_update_all().write_mode("rewrite_columns")
            real_execute(builder, pa.Table.from_pylist(failed))
            later.append(newest.version)
        return stats

    monkeypatch.setattr(MergeInsertBuilder, "execute", execute_then_a_later_run_commits)
    result = _depth(uri, tiny_model, ["part_1"])["part_1"]
    monkeypatch.undo()
    assert later == [result.version + 1]
    assert all(v.passed for v in result.checks.values()), result.checks
    at_result = lance.dataset(uri, version=result.version)
    statuses = at_result.to_table(columns=["depth_status"], filter="shard = 'part_1' AND status = 'ok'")
    assert set(statuses["depth_status"].to_pylist()) == {"ok"}
    assert not check_shard_depth(lance.dataset(uri), "part_1", SAMPLING)["every_ok_video_has_depth"].passed
