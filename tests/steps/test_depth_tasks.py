"""The depth step's Ray tasks, run in this process (no Ray started): their codecs run the threads the
task reserves, and their workers are recycled like the transcode task's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lance
import numpy as np
import pytest

from kinetics_assets.distributed import depth as ray_depth
from kinetics_assets.distributed import transcode as ray_transcode
from kinetics_assets.media.depth_codec import DepthEncoding
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.steps.depth_video import DepthJob
from kinetics_assets.table import commit_shard, write_shard_fragments
from tests.harness.av_streams import record_opened_streams
from tests.harness.exotic_clips import exotic_clip_bytes

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def table(tmp_path: Path) -> tuple[str, DepthJob]:
    uri = str(tmp_path / "t.lance")
    video = exotic_clip_bytes(container_format="mp4", width=96, height=64, fps=10, frames=12)
    commit_shard(
        uri, "s", write_shard_fragments([{"video_id": "v", "shard": "s", "status": "ok", "video": video}], uri)
    )
    (row,) = lance.dataset(uri).to_table(columns=["video_id"], with_row_id=True).to_pylist()
    return uri, DepthJob(video_id="v", row_id=row["_rowid"], shard="s")


@pytest.mark.parametrize("cpus", [1, 2])
def test_decode_and_encode_tasks_run_as_many_codec_threads_as_they_reserve_cpus(
    table: tuple[str, DepthJob], monkeypatch: pytest.MonkeyPatch, cpus: int
) -> None:
    uri, job = table
    opened: list[Any] = record_opened_streams(monkeypatch)
    decoded, frames = ray_depth._decode_task._function(
        uri, lance.dataset(uri).version, None, job, FrameSampling.parse("count=4"), threads=cpus
    )
    depth = np.linspace(0, 1, frames[..., 0].size, dtype=np.float32).reshape(frames.shape[:3])
    ray_depth._encode_task._function(depth, decoded.timestamps, DepthEncoding(), threads=cpus)
    # The decode task opens the video twice, to index it (demuxing only, nothing decoded) and to
    # decode its frames; the encode task opens its output once.
    index, decoder, encoder = opened
    assert (decoder.codec_context.thread_count, encoder.codec_context.thread_count) == (cpus, cpus)
    assert index.codec_context.thread_count == 1


def test_the_options_reserve_one_cpu_per_task_by_default() -> None:
    assert ray_depth.RayDepthOptions().task_num_cpus == 1
    with pytest.raises(ValueError, match="task_num_cpus must be >= 1"):
        ray_depth.RayDepthOptions(task_num_cpus=0)


def test_depth_task_workers_are_recycled_like_the_transcode_tasks() -> None:
    transcode = ray_transcode._transcode_task._default_options
    for task in (ray_depth._decode_task, ray_depth._encode_task):
        options = task._default_options
        assert options["num_cpus"] == 1
        assert options["max_calls"] == transcode["max_calls"] == 200
