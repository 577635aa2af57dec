"""The transcode step's own logic with the in-process executor: no Ray, a real Lance table, real
clips (generated) and real archives. The same step on Ray is tested in
tests/integration/test_ray_transcode_step.py."""

from __future__ import annotations

import contextlib
import dataclasses
import tarfile
from typing import TYPE_CHECKING

import lance
import pytest

from kinetics_assets.ingest.shards import Shard
from kinetics_assets.limits import DEFAULT_LIMITS
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.steps.failures import ShardFailure
from kinetics_assets.steps.in_process_transcode import InProcessTranscodeExecutor
from kinetics_assets.steps.transcode import transcode_shards
from kinetics_assets.steps.transcode_result import ClipFailure, TranscodeStepResult
from kinetics_assets.steps.transcode_source import ShardSource
from kinetics_assets.table import shard_rows
from tests.harness.shards import ShardSpec, build_shard

if TYPE_CHECKING:
    from pathlib import Path

CONFIG = TranscodeConfig(preset="ultrafast")
EXECUTOR = InProcessTranscodeExecutor(rows_per_fragment=2)


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> list[ShardSpec]:
    """Three small shards; part_0 has defective clips (truncated, empty, not a video) beside good ones."""
    root = tmp_path_factory.mktemp("shards")
    return [build_shard(root / f"s{i}", f"part_{i}", n_clips=2, with_defects=(i == 0), seed=i) for i in range(3)]


def _source(spec: ShardSpec, sha: str | None = None, archive: Path | None = None) -> ShardSource:
    shard = Shard(spec.name, "archive", (f"http://127.0.0.1:1/{spec.name}.tar.gz",), "k400", spec.name)
    path = archive or spec.archive_path
    return ShardSource(shard, lambda: contextlib.nullcontext(path), sha or f"sha-{spec.name}")


def _run(sources: list[ShardSource], uri: str, **kwargs) -> dict[str, TranscodeStepResult | ShardFailure]:
    kwargs.setdefault("log", lambda _: None)
    results = transcode_shards(
        sources, lance_uri=uri, storage_options=None, annotations={}, config=CONFIG, executor=EXECUTOR, **kwargs
    )
    return {r.shard: r for r in results}


def _rows(uri: str, shard: str) -> dict[str, dict]:
    rows = shard_rows(lance.dataset(uri), shard).to_pylist()
    assert len({r["video_id"] for r in rows}) == len(rows), "duplicate video_id"
    return {r["video_id"]: r for r in rows}


def _commits(uri: str) -> dict[str, int]:
    """The table version at which each shard's transcode commit landed."""
    ds = lance.dataset(uri)
    commits = {}
    for version in (v["version"] for v in ds.versions()):
        properties = ds.read_transaction(version).transaction_properties or {}
        if properties.get("step") == "transcoded_videos":
            commits[properties["shard"]] = version
    return commits


def test_two_shards_commit_independently_with_their_failed_clips_recorded(specs, tmp_path):
    uri = str(tmp_path / "t.lance")
    lines: list[str] = []
    results = _run([_source(specs[0]), _source(specs[1])], uri, log=lines.append, expected_clips=10)
    first, second = results["part_0"], results["part_1"]
    assert first.mode == second.mode == "full"
    assert first.version != second.version
    assert _commits(uri) == {"part_0": first.version, "part_1": second.version}
    assert all(v.passed for v in first.checks.values())
    assert all(v.passed for v in second.checks.values())
    assert set(_rows(uri, "part_0")) == set(specs[0].good_ids) | set(specs[0].defective_ids)
    assert set(_rows(uri, "part_1")) == set(specs[1].good_ids)
    # Failures are typed, one per defective clip, each with its cause.
    assert {f.video_id for f in first.failures} == set(specs[0].defective_ids)
    assert second.failures == []
    assert all(isinstance(f, ClipFailure) and f.error_type and f.error_message for f in first.failures)
    assert (first.ok, first.failed, first.processed) == (
        len(specs[0].good_ids),
        len(specs[0].defective_ids),
        first.members,
    )
    assert first.bytes_in > 0
    assert first.bytes_out > 0
    assert first.cpu_seconds > 0
    assert {s["kind"] for s in first.skipped} == {"junk"}
    assert any(line.startswith("shard part_1: committed 2 clips") for line in lines)


def test_fragments_hold_one_shard_each(specs, tmp_path):
    uri = str(tmp_path / "t.lance")
    _run([_source(specs[0]), _source(specs[1])], uri)
    ds = lance.dataset(uri)
    shards_per_fragment = [set(f.to_table(columns=["shard"])["shard"].to_pylist()) for f in ds.get_fragments()]
    assert all(len(shards) == 1 for shards in shards_per_fragment)
    # rows_per_fragment=2: part_0's five clips are written as three fragments.
    assert sum(shards == {"part_0"} for shards in shards_per_fragment) == 3


def test_a_truncated_archive_fails_alone(specs, tmp_path):
    broken = tmp_path / "part_1.tar.gz"
    data = specs[1].archive_path.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    uri = str(tmp_path / "t.lance")
    results = _run([_source(specs[0]), _source(specs[1], archive=broken), _source(specs[2])], uri)
    assert isinstance(results["part_1"], ShardFailure)
    assert "part_1" in results["part_1"].error
    assert _rows(uri, "part_1") == {}
    assert set(_commits(uri)) == {"part_0", "part_2"}
    assert results["part_2"].ok == 2
    assert set(_rows(uri, "part_2")) == set(specs[2].good_ids)


def test_a_missing_archive_fails_alone_and_raise_errors_raises_it(specs, tmp_path):
    uri = str(tmp_path / "t.lance")
    missing = _source(specs[1], archive=tmp_path / "gone.tar.gz")
    results = _run([missing, _source(specs[2])], uri)
    assert "UpstreamMissing" in results["part_1"].error
    assert "raw_archives" in results["part_1"].error
    assert results["part_2"].ok == 2
    with pytest.raises(Exception, match="raw_archives"):
        _run([missing], uri, raise_errors=True)


def test_rerun_skips_unchanged_shards_and_redoes_a_new_input(specs, tmp_path):
    uri = str(tmp_path / "t.lance")
    first = _run([_source(specs[0]), _source(specs[1])], uri)
    version = lance.dataset(uri).version
    again = _run([_source(specs[0]), _source(specs[1], sha="another archive")], uri)
    skipped, redone = again["part_0"], again["part_1"]
    assert skipped.mode == "unchanged"
    assert skipped.processed == 0
    assert skipped.version == version
    assert skipped.kept == first["part_0"].ok
    assert skipped.failures == first["part_0"].failures
    assert all(v.passed for v in skipped.checks.values())
    assert redone.mode == "full"
    assert redone.processed == 2
    assert redone.version > version
    assert {r["source_sha256"] for r in _rows(uri, "part_1").values()} == {"another archive"}
    # Other encoder settings are not the same shard: it is transcoded again.
    other = transcode_shards(
        [_source(specs[0])],
        lance_uri=uri,
        storage_options=None,
        annotations={},
        config=dataclasses.replace(CONFIG, crf=30),
        executor=EXECUTOR,
        log=lambda _: None,
    )
    assert [r.mode for r in other] == ["full"]


def test_retry_failed_only_keeps_ok_rows(specs, tmp_path):
    uri = str(tmp_path / "t.lance")
    _run([_source(specs[0])], uri)
    before = _rows(uri, "part_0")
    result = _run([_source(specs[0])], uri, retry_failed_only=True)["part_0"]
    after = _rows(uri, "part_0")
    assert result.mode == "retry_failed"
    assert set(after) == set(before)
    assert (result.processed, result.kept) == (len(specs[0].defective_ids), len(specs[0].good_ids))
    for video_id in specs[0].good_ids:  # untouched: same row, same processing time
        assert after[video_id]["processed_at"] == before[video_id]["processed_at"]
    for video_id in specs[0].defective_ids:  # tried again, and counted
        assert after[video_id]["attempts"] == 2
        assert after[video_id]["status"] == "failed"


def test_a_member_over_the_size_limit_is_a_failed_row(specs, tmp_path):
    with tarfile.open(specs[1].archive_path) as tar:
        sizes = {m.name: m.size for m in tar.getmembers() if m.name in specs[1].video_members}
    limit = min(sizes.values())  # the smallest clip fits, the other is over
    limits = dataclasses.replace(DEFAULT_LIMITS, max_member_bytes=limit)
    uri = str(tmp_path / "t.lance")
    result = _run([_source(specs[1])], uri, limits=limits)["part_1"]
    rows = _rows(uri, "part_1")
    kinds = {rows[v]["source_member"]: rows[v]["error_type"] for v in rows}
    assert kinds == {name: (None if size <= limit else "limit_exceeded") for name, size in sizes.items()}
    assert result.members == 2
    assert result.failed == 1
    assert result.checks["one_row_per_member"].passed
