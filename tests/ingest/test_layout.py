"""Every path and URI of a shard, pinned: users hold data in this layout, so it must not move."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinetics_assets.ingest.layout import (
    ShardLayout,
    annotations_path,
    part_meta_path,
    part_path,
    sidecar_path,
    url_file_name,
)
from kinetics_assets.ingest.shards import Shard

ARCHIVE = Shard("part_0", "archive", ("https://example.com/k400/val/part_0.tar.gz",), "k400", "part_0")
VIDEOS = Shard(
    "my_list", "videos", ("https://example.com/v/a%20b_000001_000011.mp4", "/clips/c.mp4"), "custom", "my_list"
)


def test_an_archive_shard_on_a_local_data_root(tmp_path: Path):
    layout = ShardLayout.under(str(tmp_path / "data"), ARCHIVE)
    archive = tmp_path / "data" / "raw" / "part_0.tar.gz"
    assert layout.path == archive
    assert not layout.is_remote
    assert layout.sidecar == f"{archive}.verified.json"
    assert layout.index == f"{archive}.index.json"
    assert layout.complete_marker == layout.sidecar


def test_a_video_list_shard_on_a_local_data_root(tmp_path: Path):
    layout = ShardLayout.under(tmp_path / "data", VIDEOS)
    folder = tmp_path / "data" / "raw" / "my_list"
    assert layout.path == folder
    assert layout.failed_downloads == str(folder / "failed_downloads.json") == layout.complete_marker
    assert layout.video(VIDEOS.urls[0]) == str(folder / "a b_000001_000011.mp4")
    assert layout.video_sidecar(VIDEOS.urls[1]) == str(folder / "c.mp4.verified.json")


def test_shards_on_object_storage_have_the_same_layout():
    archive = ShardLayout.under("s3://bucket/data/", ARCHIVE)
    assert archive.is_remote
    assert archive.source == "s3://bucket/data/raw/part_0.tar.gz"
    assert archive.sidecar == "s3://bucket/data/raw/part_0.tar.gz.verified.json"
    assert archive.index == "s3://bucket/data/raw/part_0.tar.gz.index.json"
    folder = ShardLayout.under("s3://bucket/data", VIDEOS)
    assert folder.failed_downloads == "s3://bucket/data/raw/my_list/failed_downloads.json"
    assert folder.video_sidecar(VIDEOS.urls[1]) == "s3://bucket/data/raw/my_list/c.mp4.verified.json"
    with pytest.raises(ValueError, match=r"part_0.*object storage"):
        _ = archive.path


def test_staging_and_staged_copies_live_in_the_cache(tmp_path: Path):
    cache = tmp_path / "cache"
    assert ShardLayout.under(cache, ARCHIVE).path == cache / "raw" / "part_0.tar.gz"
    staged = ShardLayout.staged(cache, ARCHIVE, "0123abcd")
    assert staged.path == cache / "staged" / "part_0-0123abcd" / "part_0.tar.gz"
    assert staged.staged_folder == cache / "staged" / "part_0-0123abcd"
    assert ShardLayout.staged(cache, VIDEOS, "x").path == cache / "staged" / "my_list-x" / "my_list"


def test_the_files_beside_a_download():
    dest = Path("/d/part_0.tar.gz")
    assert part_path(dest) == Path("/d/part_0.tar.gz.part")
    assert part_meta_path(dest) == Path("/d/part_0.tar.gz.part.json")
    assert sidecar_path(dest) == Path("/d/part_0.tar.gz.verified.json")


def test_annotations_are_cached_per_release_under_the_url_file_name(tmp_path: Path):
    url = "https://example.com/kinetics/700_2020/annotations/val.csv"
    assert annotations_path(tmp_path, "k700_2020", url) == tmp_path / "annotations" / "k700_2020" / "val.csv"
    assert url_file_name("file:///x/a%20b.mp4") == "a b.mp4"
    assert url_file_name("rel/c.mp4") == "c.mp4"
