"""Near-duplicates of a real Lance table, fingerprinted by the stage, kept in the side table: one
overwrite commit per run, the main-table version recorded, a shard committed later left to the
next run."""

from __future__ import annotations

from datetime import UTC, datetime

import lance
import pytest

from kinetics_assets.dedup import (
    duplicate_of,
    find_near_duplicates,
    near_duplicates_uri,
    read_near_duplicates,
    write_near_duplicates,
)
from kinetics_assets.stages import InProcessExecutor, run_column_stage
from kinetics_assets.stages.fingerprints import FingerprintStage
from kinetics_assets.table import commit_shard, write_shard_fragments
from tests.harness.scenes import flat_clip, scene_clip


def _row(shard: str, name: str, data: bytes, seconds: float, *, width: int = 96, height: int = 72) -> dict:
    return {
        "video_id": f"{shard}-{name}",
        "shard": shard,
        "status": "ok",
        "video": data,
        "duration_s": seconds,
        "width": width,
        "height": height,
        "processed_at": datetime.now(UTC),
    }


def fingerprinted_table(uri: str) -> str:
    """Shard s1: a 6 s pan, a cropped copy, a 3 s segment of it, another pan and two black clips."""
    rows = [
        _row("s1", "pan", scene_clip(1, seconds=6.0), 6.0),
        _row("s1", "pan-cropped", scene_clip(1, seconds=6.0, crop=0.1, size=(160, 120)), 6.0, width=160, height=120),
        _row("s1", "pan-segment", scene_clip(1, start_s=2.0, seconds=3.0), 3.0),
        _row("s1", "other", scene_clip(7, seconds=6.0), 6.0),
        _row("s1", "black", flat_clip(seconds=3.0), 3.0),
        _row("s1", "black-too", flat_clip(seconds=3.0), 3.0),
    ]
    commit_shard(uri, "s1", write_shard_fragments(rows, uri))
    _fingerprint(uri, "s1")
    return uri


def _fingerprint(uri: str, shard: str) -> None:
    list(
        run_column_stage(
            FingerprintStage(), [shard], lance_uri=uri, storage_options=None, executor=InProcessExecutor(), log=print
        )
    )


@pytest.fixture
def uri(tmp_path) -> str:
    return fingerprinted_table(str(tmp_path / "videos.lance"))


def test_copies_and_segments_form_one_group_kept_by_the_longest_largest_clip(uri):
    ds = lance.dataset(uri)
    found = find_near_duplicates(ds)
    assert found.source_version == ds.version
    assert [(g.keeper, g.members) for g in found.groups] == [
        ("s1-pan-cropped", ("s1-pan-cropped", "s1-pan", "s1-pan-segment"))
    ]
    assert found.duplicates == 2
    assert found.work["clips"] == 6
    reasons = {(p.video_a, p.video_b): p for p in found.pairs}
    segment = reasons[("s1-pan", "s1-pan-segment")]
    assert (segment.reason, segment.offset_s, segment.overlap_s) == ("fingerprint", 2.0, 3.0)
    assert all(p.score >= 0.5 for p in found.pairs)


def test_the_side_table_is_replaced_whole_and_records_the_version_it_read(uri):
    ds = lance.dataset(uri)
    assert read_near_duplicates(uri) is None
    assert duplicate_of(uri) == {}
    first = write_near_duplicates(find_near_duplicates(ds), uri)
    stored = read_near_duplicates(uri)
    assert stored is not None
    assert (stored.version, stored.source_version) == (first, ds.version)
    assert stored.table.num_rows == 3
    assert near_duplicates_uri(uri).endswith("videos.near_duplicates.lance")
    assert duplicate_of(uri) == {"s1-pan": "s1-pan-cropped", "s1-pan-segment": "s1-pan-cropped"}
    pairs = {(r["video_id"], p["other"]) for r in stored.table.to_pylist() for p in r["pairs"]}
    # Each pair once, in its first video's row; the cropped copy and the segment meet through the pan.
    assert pairs == {("s1-pan", "s1-pan-segment"), ("s1-pan", "s1-pan-cropped")}

    # A shard lands after the run read the table: not in that answer, found by the next run, and the
    # re-run replaces the rows (never adds to them).
    commit_shard(uri, "s2", write_shard_fragments([_row("s2", "pan-again", scene_clip(1, seconds=6.0), 6.0)], uri))
    _fingerprint(uri, "s2")
    assert read_near_duplicates(uri).source_version == ds.version
    later = lance.dataset(uri)
    write_near_duplicates(find_near_duplicates(later), uri)
    again = read_near_duplicates(uri)
    assert again.source_version == later.version > ds.version
    assert sorted(again.table["video_id"].to_pylist()) == ["s1-pan", "s1-pan-cropped", "s1-pan-segment", "s2-pan-again"]
    assert lance.dataset(near_duplicates_uri(uri)).count_rows() == 4


def test_a_table_without_fingerprints_says_what_to_run(tmp_path):
    uri = str(tmp_path / "bare.lance")
    commit_shard(uri, "s1", write_shard_fragments([_row("s1", "pan", scene_clip(1, seconds=2.0), 2.0)], uri))
    with pytest.raises(ValueError, match="materialize clip_fingerprints"):
        find_near_duplicates(lance.dataset(uri))
