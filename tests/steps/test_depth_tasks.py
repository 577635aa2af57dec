"""The stage executor's Ray tasks, run in this process (no Ray started): the depth stage's codecs run
the threads its tasks reserve, and the task workers are recycled like the transcode task's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lance
import numpy as np
import pytest

from kinetics_assets.depth.model import DepthModelConfig
from kinetics_assets.distributed import stage_executor as ray_stage
from kinetics_assets.distributed import transcode as ray_transcode
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.stages import DepthStage, Resources, TableSnapshot, VideoTask
from kinetics_assets.table import commit_shard, write_shard_fragments
from tests.harness.av_streams import record_opened_streams
from tests.harness.exotic_clips import exotic_clip_bytes

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def task(tmp_path: Path) -> VideoTask:
    uri = str(tmp_path / "t.lance")
    video = exotic_clip_bytes(container_format="mp4", width=96, height=64, fps=10, frames=12)
    commit_shard(
        uri, "s", write_shard_fragments([{"video_id": "v", "shard": "s", "status": "ok", "video": video}], uri)
    )
    (row,) = lance.dataset(uri).to_table(columns=["video_id"], with_row_id=True).to_pylist()
    snapshot = TableSnapshot(uri=uri, version=lance.dataset(uri).version)
    return VideoTask(video_id="v", row_id=row["_rowid"], shard="s", duration_s=None, snapshot=snapshot)


@pytest.mark.parametrize("cpus", [1, 2])
def test_prepare_and_finish_tasks_run_as_many_codec_threads_as_the_stage_reserves_cpus(
    task: VideoTask, monkeypatch: pytest.MonkeyPatch, cpus: int
) -> None:
    stage = DepthStage(
        model=DepthModelConfig(), sampling=FrameSampling.parse("count=4"), resources=Resources(cpus=cpus)
    )
    opened: list[Any] = record_opened_streams(monkeypatch)
    prepared, frames = ray_stage._prepare_task._function(stage, task)
    depth = np.linspace(0, 1, frames[..., 0].size, dtype=np.float32).reshape(frames.shape[:3])
    row = ray_stage._finish_task._function(stage, prepared, depth)
    assert row.status == "ok", row.error
    # The prepare task opens the video twice, to index it (demuxing only, nothing decoded) and to
    # decode its frames; the finish task opens its output once.
    index, decoder, encoder = opened
    assert (decoder.codec_context.thread_count, encoder.codec_context.thread_count) == (cpus, cpus)
    assert index.codec_context.thread_count == 1


def test_a_stage_reserves_one_cpu_per_task_by_default() -> None:
    assert Resources().cpus == 1
    with pytest.raises(ValueError, match="cpus must be >= 1"):
        Resources(cpus=0)


def test_stage_task_workers_are_recycled_like_the_transcode_tasks() -> None:
    transcode = ray_transcode._transcode_task._default_options
    for remote in (ray_stage._prepare_task, ray_stage._finish_task):
        assert remote._default_options["max_calls"] == transcode["max_calls"] == 200
