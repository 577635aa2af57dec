"""transcoded_videos for whole shards on a real local Ray (the Ray executor) and a real Lance table."""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

import lance
import pytest

from kinetics_assets.distributed.transcode import RayTranscodeExecutor, RayTranscodeOptions
from kinetics_assets.ingest.annotations import load_annotations
from kinetics_assets.ingest.shards import Shard
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.steps.failures import UpstreamMissing
from kinetics_assets.steps.transcode import transcode_step
from kinetics_assets.table import shard_rows
from tests.harness.shards import build_shard, build_video_list

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

CONFIG = TranscodeConfig(preset="ultrafast")
EXECUTOR = RayTranscodeExecutor(options=RayTranscodeOptions(max_in_flight=3, rows_per_fragment=3))


def _shard(spec, key: str | None = None) -> Shard:
    return Shard(key or spec.name, "archive", (f"http://127.0.0.1:1/{spec.archive_path.name}",), "k400", spec.name)


def _run(shard: Shard, source: Path, uri: str, annotations=None, **kwargs):
    return transcode_step(
        shard,
        source,
        lance_uri=uri,
        storage_options=None,
        annotations=annotations or {},
        config=CONFIG,
        executor=EXECUTOR,
        log=lambda _: None,
        **kwargs,
    )


def _rows(uri: str, shard: str) -> dict[str, dict]:
    rows = shard_rows(lance.dataset(uri), shard).to_pylist()
    assert len({r["video_id"] for r in rows}) == len(rows), "duplicate video_id"
    return {r["video_id"]: r for r in rows}


@pytest.fixture(scope="module")
def flat_shard(tmp_path_factory):
    return build_shard(tmp_path_factory.mktemp("flat"), "part_0", n_clips=5, layout="flat")


def test_every_member_becomes_a_row_and_bad_clips_fail_with_a_cause(ray_local, flat_shard, tmp_path):
    uri = str(tmp_path / "t.lance")
    annotations = load_annotations(flat_shard.annotations_path)
    result = _run(_shard(flat_shard), flat_shard.archive_path, uri, annotations)
    rows = _rows(uri, "part_0")
    assert set(rows) == set(flat_shard.good_ids) | set(flat_shard.defective_ids)
    assert result.members == len(rows)
    assert result.ok == len(flat_shard.good_ids)
    for video_id in flat_shard.good_ids:
        row = rows[video_id]
        assert row["status"] == "ok"
        assert row["bytes"] > 0
        assert row["label"] == flat_shard.labels[video_id]
        assert row["frames"] == row["source_frames"]
        assert min(row["width"], row["height"]) <= 360
    for video_id in flat_shard.defective_ids:
        row = rows[video_id]
        assert row["status"] == "failed"
        assert (row["error_type"] and video_id in row["error_message"]) or row["source_member"] in row["error_message"]
    assert all(v.passed for v in result.checks.values()), result.checks


def test_rerun_replaces_rows_without_duplicates(ray_local, flat_shard, tmp_path):
    uri = str(tmp_path / "t.lance")
    first = _run(_shard(flat_shard), flat_shard.archive_path, uri)
    second = _run(_shard(flat_shard), flat_shard.archive_path, uri)
    assert second.version > first.version
    assert lance.dataset(uri).count_rows() == first.members == len(_rows(uri, "part_0"))


def test_retry_failed_only_keeps_ok_rows(ray_local, flat_shard, tmp_path):
    uri = str(tmp_path / "t.lance")
    _run(_shard(flat_shard), flat_shard.archive_path, uri)
    before = _rows(uri, "part_0")
    result = _run(_shard(flat_shard), flat_shard.archive_path, uri, retry_failed_only=True)
    after = _rows(uri, "part_0")
    assert set(after) == set(before)
    assert result.processed == len(flat_shard.defective_ids)
    assert result.kept == len(flat_shard.good_ids)
    for video_id in flat_shard.good_ids:  # untouched: same row, same processing time
        assert after[video_id]["processed_at"] == before[video_id]["processed_at"]
    for video_id in flat_shard.defective_ids:  # tried again, and counted
        assert after[video_id]["attempts"] == 2
        assert after[video_id]["status"] == "failed"


def test_two_shards_at_once_both_land(ray_local, tmp_path):
    uri = str(tmp_path / "t.lance")
    specs = [
        build_shard(tmp_path / "a", "k700_val_001", n_clips=3, layout="class_folders", with_defects=False, seed=1),
        build_shard(tmp_path / "b", "k700_val_002", n_clips=3, layout="class_folders", with_defects=False, seed=2),
    ]
    errors: list[BaseException] = []

    def run(spec):
        try:
            _run(_shard(spec), spec.archive_path, uri)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(spec,)) for spec in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for spec in specs:
        rows = _rows(uri, spec.name)
        assert set(rows) == set(spec.good_ids)
        # K700-style archives carry the class as a folder: that is the label.
        assert all(rows[v]["label"] == spec.labels[v] for v in spec.good_ids)


def test_video_list_shard_reads_a_folder(ray_local, tmp_path):
    spec = build_video_list(tmp_path, "my_clips", n_clips=2, with_defects=True)
    shard = Shard("my_clips", "videos", tuple(spec.entries), "custom", "my_clips")
    _run(shard, spec.clips_dir, str(tmp_path / "t.lance"))
    rows = _rows(str(tmp_path / "t.lance"), "my_clips")
    assert {r["status"] for r in rows.values()} == {"ok", "failed"}
    assert len(rows) == len(spec.clip_paths)


def test_missing_upstream_says_how_to_include_it(tmp_path):
    shard = Shard("part_7", "archive", ("http://127.0.0.1:1/part_7.tar.gz",), "k400", "part_7")
    with pytest.raises(UpstreamMissing, match=r"part_7.*raw_archives.*'\*transcoded_videos'"):
        _run(shard, tmp_path / "part_7.tar.gz", str(tmp_path / "t.lance"))


def test_real_clips_shard(ray_local, real_videos_dir, tmp_path):
    spec = build_shard(tmp_path, "real", layout="class_folders", real_videos_dir=real_videos_dir, with_defects=False)
    uri = str(tmp_path / "t.lance")
    result = _run(_shard(spec), spec.archive_path, uri)
    rows = _rows(uri, "real")
    failed = {v: (r["error_type"], r["error_message"]) for v, r in rows.items() if r["status"] != "ok"}
    assert not failed
    assert result.members == len(spec.good_ids) == 10
    for row in rows.values():
        assert row["frames"] == row["source_frames"], row["video_id"]


def test_video_list_with_a_missing_video_records_it_and_goes_on(ray_local, tmp_path):
    from kinetics_assets.ingest.download import DownloadConfig
    from kinetics_assets.steps.raw import fetch_shard
    from tests.harness.http_server import FaultyFileServer

    with FaultyFileServer(tmp_path / "served") as server:
        spec = build_video_list(tmp_path / "served", "my_list", n_clips=2, base_url=server.base_url.rstrip("/"))
        missing = server.url("my_list/not_there_000001_000011.mp4")
        shard = Shard("my_list", "videos", (*spec.entries, missing), "custom", "my_list")
        raw = fetch_shard(shard, str(tmp_path / "data"), DownloadConfig(max_attempts=1))
    assert [f.url for f in raw.failed] == [missing]
    assert "404" in raw.failed[0].error
    assert len(raw.downloads) == 2
    uri = str(tmp_path / "t.lance")
    result = _run(shard, raw.path, uri)
    rows = _rows(uri, "my_list")
    assert len(rows) == 3
    assert result.checks["one_row_per_member"].passed
    failed = rows["not_there_000001_000011"]
    assert failed["status"] == "failed"
    assert failed["error_type"] == "download_failed"
    assert missing in failed["error_message"]


def test_many_shards_share_one_window_and_a_broken_one_fails_alone(ray_local, tmp_path):
    """Three shards through one window: the middle one's archive is cut short, so it fails as a
    whole (nothing of it committed) and the shards before and after it commit."""
    from kinetics_assets.steps.failures import ShardFailure
    from kinetics_assets.steps.transcode import transcode_shards
    from kinetics_assets.steps.transcode_source import ShardSource

    specs = [build_shard(tmp_path / f"s{i}", f"part_{i}", n_clips=3, with_defects=False, seed=i) for i in range(3)]
    broken = specs[1].archive_path
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    uri = str(tmp_path / "t.lance")
    sources = [
        ShardSource(_shard(spec), (lambda path=spec.archive_path: contextlib.nullcontext(path)), f"sha-{i}")
        for i, spec in enumerate(specs)
    ]
    lines: list[str] = []
    results = list(
        transcode_shards(
            sources,
            lance_uri=uri,
            storage_options=None,
            annotations={},
            config=CONFIG,
            executor=EXECUTOR,
            log=lines.append,
            expected_clips=9,
        )
    )
    by_shard = {r.shard: r for r in results}
    assert isinstance(by_shard["part_1"], ShardFailure)
    assert "part_1" in by_shard["part_1"].error
    for key in ("part_0", "part_2"):
        assert by_shard[key].ok == 3
        assert all(v.passed for v in by_shard[key].checks.values())
        rows = _rows(uri, key)
        assert {r["source_sha256"] for r in rows.values()} == {f"sha-{int(key[-1])}"}
    assert _rows(uri, "part_1") == {}
    assert any("committed 3 clips" in line for line in lines)
    # Unchanged input and settings: the shards are skipped; a new archive sha is transcoded again.
    sources[2] = ShardSource(_shard(specs[2]), (lambda path=specs[2].archive_path: contextlib.nullcontext(path)), "new")
    again = {
        r.shard: r
        for r in transcode_shards(
            [sources[0], sources[2]],
            lance_uri=uri,
            storage_options=None,
            annotations={},
            config=CONFIG,
            executor=EXECUTOR,
            log=lines.append,
        )
    }
    assert again["part_0"].mode == "unchanged"
    assert again["part_0"].processed == 0
    assert again["part_2"].mode == "full"
    assert again["part_2"].processed == 3
    assert {r["source_sha256"] for r in _rows(uri, "part_2").values()} == {"new"}
