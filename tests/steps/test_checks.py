"""The shard checks: declared once, and each step's verdicts keyed by exactly those declarations."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import lance
import pytest

from kinetics_assets.ingest.archive import ArchiveIndex
from kinetics_assets.media.sampling import FrameSampling
from kinetics_assets.stages.depth_checks import check_shard_depth
from kinetics_assets.stages.transcript_checks import check_shard_transcripts
from kinetics_assets.steps.checks import (
    DEPTH_CHECKS,
    RAW_CHECKS,
    TRANSCODE_CHECKS,
    TRANSCRIPT_CHECKS,
    CheckSpec,
    Severity,
    Verdict,
)
from kinetics_assets.steps.raw import RawShard
from kinetics_assets.steps.transcode_checks import check_shard_rows
from kinetics_assets.table import (
    commit_shard,
    ensure_depth_columns,
    ensure_transcript_columns,
    write_shard_fragments,
)

ALL = {
    "raw_archives": RAW_CHECKS,
    "transcoded_videos": TRANSCODE_CHECKS,
    "depth_maps": DEPTH_CHECKS,
    "transcripts": TRANSCRIPT_CHECKS,
}


@pytest.mark.parametrize("asset", sorted(ALL))
def test_each_assets_checks_are_declared_once_with_unique_names(asset):
    checks = ALL[asset]
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), names
    assert all(isinstance(c, CheckSpec) and c.severity in get_args(Severity) for c in checks)


def test_only_the_failure_rate_blocks_and_member_names_only_warn():
    declared = [c for checks in ALL.values() for c in checks]
    assert [c.name for c in declared if c.blocking] == ["failure_rate"]
    assert [c.name for c in declared if c.severity == "warn"] == ["member_names_parse"]


def test_raw_verdicts_are_keyed_by_the_declarations():
    index = ArchiveIndex(members=["a/x_000001_000011.mp4", "a/odd.mp4"], video_members=["a/x_000001_000011.mp4",
                         "a/odd.mp4"], junk=[], unsafe=[], total_bytes=2)  # fmt: skip
    raw = RawShard(shard="s", path=Path("s.tar.gz"), downloads=[], index=index)
    verdicts = raw.checks(sha256="abc")
    assert list(verdicts) == [c.name for c in RAW_CHECKS]
    assert verdicts["archive_verified"] == Verdict(True, {"sha256": "abc"})
    assert verdicts["has_video_members"].passed
    assert verdicts["member_names_parse"] == Verdict(False, {"unparsable": ["a/odd.mp4"], "count": 1})


@pytest.fixture
def shard_table(tmp_path) -> tuple[str, list[str]]:
    """A shard of four rows, three of them failed clips (no video is decoded by these checks)."""
    uri = str(tmp_path / "t.lance")
    rows = [{"video_id": "ok1", "shard": "s", "status": "ok", "bytes": 10, "width": 2, "height": 2, "frames": 1}]
    rows += [{"video_id": f"bad{i}", "shard": "s", "status": "failed", "error_type": "truncated"} for i in range(3)]
    commit_shard(uri, "s", write_shard_fragments(rows, uri))
    return uri, [r["video_id"] for r in rows]


def test_the_failure_rate_is_judged_in_the_step(shard_table):
    uri, ids = shard_table
    strict = check_shard_rows(lance.dataset(uri), "s", ids, max_failure_rate=0.5, decode=False)
    assert list(strict) == [c.name for c in TRANSCODE_CHECKS]
    assert strict["failure_rate"] == Verdict(False, {"failed": 3, "rows": 4, "rate": 0.75, "max": 0.5})
    assert all(v.passed for name, v in strict.items() if name != "failure_rate"), strict
    relaxed = check_shard_rows(lance.dataset(uri), "s", ids, max_failure_rate=0.75, decode=False)
    assert relaxed["failure_rate"].passed


def test_depth_verdicts_are_keyed_by_the_declarations(shard_table):
    uri, _ = shard_table
    ensure_depth_columns(uri)
    verdicts = check_shard_depth(lance.dataset(uri), "ok_less_shard", FrameSampling())
    assert list(verdicts) == [c.name for c in DEPTH_CHECKS]
    assert all(v.passed for v in verdicts.values()), verdicts


def test_transcript_verdicts_are_keyed_by_the_declarations(shard_table):
    uri, _ = shard_table
    ensure_transcript_columns(uri)
    verdicts = check_shard_transcripts(lance.dataset(uri), "s")
    assert list(verdicts) == [c.name for c in TRANSCRIPT_CHECKS]
    # The shard's ok row has no transcript status yet: the first check says so, naming it.
    assert verdicts["every_ok_video_has_transcript_status"] == Verdict(
        False, {"ok_videos": 1, "without_status": ["ok1"]}
    )
    assert verdicts["transcript_segments_within_clip_and_ordered"].passed
