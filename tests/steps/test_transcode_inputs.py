"""transcode_inputs: what the transcode step reads of the raw step's output, on a local data root."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from kinetics_assets.ingest.annotations import load_annotations
from kinetics_assets.ingest.download import DownloadConfig
from kinetics_assets.ingest.shards import Shard
from kinetics_assets.steps.raw import fetch_shard
from kinetics_assets.steps.transcode_inputs import transcode_inputs
from tests.harness.shards import build_shard, build_video_list

if TYPE_CHECKING:
    from pathlib import Path


def test_fetched_shards_give_sources_hashes_annotations_and_a_clip_count(tmp_path: Path):
    spec = build_shard(tmp_path / "served", "part_0", n_clips=2)
    data = tmp_path / "data"
    archive = Shard("part_0", "archive", (str(spec.archive_path),), "k400", "part_0")
    fetch_shard(archive, str(data), DownloadConfig(max_attempts=1))
    inputs = transcode_inputs(
        [archive],
        data_root=str(data),
        storage_options=None,
        cache_dir=tmp_path / "cache",
        local_root=data,
        annotations_url=str(spec.annotations_path),
        release="k400",
    )
    (source,) = inputs.sources
    assert source.shard == archive
    assert source.sha256 == hashlib.sha256(spec.archive_path.read_bytes()).hexdigest()
    with source.open() as path:
        assert path == data / "raw" / "part_0.tar.gz"
    assert inputs.expected_clips == len(spec.video_members)
    assert inputs.annotations == load_annotations(spec.annotations_path) != {}
    assert (data / "annotations" / "k400" / spec.annotations_path.name).is_file()


def test_unknown_counts_and_no_annotations(tmp_path: Path):
    videos = build_video_list(tmp_path / "served", "my_list", n_clips=1)
    listed = Shard("my_list", "videos", tuple(videos.entries), "custom", "my_list")
    unfetched = Shard("part_1", "archive", (str(tmp_path / "nowhere.tar.gz"),), "custom", "part_1")
    data = tmp_path / "data"
    fetch_shard(listed, str(data), DownloadConfig(max_attempts=1))
    inputs = transcode_inputs(
        [listed, unfetched],
        data_root=str(data),
        storage_options=None,
        cache_dir=tmp_path / "cache",
        local_root=data,
        annotations_url=None,
        release="custom",
    )
    assert [s.sha256 for s in inputs.sources] == [None, None]
    assert inputs.expected_clips is None
    assert inputs.annotations == {}
    with inputs.sources[0].open() as path:
        assert sorted(p.name for p in path.glob("*.mp4")) == [p.name for p in videos.clip_paths]
