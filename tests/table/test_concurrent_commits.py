"""Concurrent writers on one Lance table: racing runs of one shard never land twice, 16 shards with
transcode and depth commits interleaved all land (local and on a loopback S3 server), every version
ever committed is audited, and a commit that keeps conflicting gives up with an error naming it."""

from __future__ import annotations

import multiprocessing as mp
from typing import TYPE_CHECKING

import lance
import pytest
from lance import LanceOperation
from lance.commit import CommitConflictError
from lance.dataset import Transaction

from kinetics_assets.table import (
    COMMIT_ATTEMPTS,
    CommitContention,
    commit_shard,
    ensure_table,
    open_table,
    retry_commit,
    shard_fragment_ids,
    write_shard_fragments,
)
from tests.harness.commit_soak import audit_versions, moto_server, sixteen_shards
from tests.harness.commit_soak import shard_rows as _rows

if TYPE_CHECKING:
    from pathlib import Path

# ---------------------------------------------------------------------------------------------------
# Two (or more) runs of the same shard at once, in separate processes


def _racer(uri: str, shard: str, run: str, *, retry_ids: list[int] | None, barrier, results) -> None:
    rows = _rows(shard, run, retry_ids)
    fragments = write_shard_fragments(rows, uri)
    barrier.wait(timeout=120)
    try:
        replace = {r["video_id"] for r in rows} if retry_ids is not None else None
        result = commit_shard(uri, shard, fragments, replace_ids=replace, properties={"step": run})
        results.put((run, "ok", result.attempts))
    except Exception as exc:  # noqa: BLE001 - reported to the parent and asserted there
        results.put((run, "error", repr(exc)))


def test_racing_runs_of_one_shard_never_leave_a_version_holding_it_twice(tmp_path: Path):
    uri = str(tmp_path / "t.lance")
    ensure_table(uri)
    ctx = mp.get_context("spawn")
    outcomes = []
    for round_no in range(2):
        # Two full runs of shard x, a retry of two of its clips, and another shard's first run, all
        # released at once. Round 0 starts from the empty table, round 1 from a table holding x.
        racers = [
            ("x", f"r{round_no}-full-a", None),
            ("x", f"r{round_no}-full-b", None),
            ("x", f"r{round_no}-retry", [0, 1]),
            (f"other{round_no}", f"r{round_no}-other", None),
        ]
        barrier, results = ctx.Barrier(len(racers)), ctx.Queue()
        procs = [
            ctx.Process(
                target=_racer, args=(uri, s, run), kwargs={"retry_ids": ids, "barrier": barrier, "results": results}
            )
            for s, run, ids in racers
        ]
        for p in procs:
            p.start()
        try:
            outcomes += [results.get(timeout=180) for _ in procs]
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
                    p.join()
    assert [o for o in outcomes if o[1] != "ok"] == []
    assert all(1 <= o[2] <= COMMIT_ATTEMPTS for o in outcomes)
    assert audit_versions(uri) == []
    ds = open_table(uri)
    assert sorted(ds.to_table(columns=["video_id"])["video_id"].to_pylist()) == [
        "other0-0",
        "other0-1",
        "other1-0",
        "other1-1",
        "x-0",
        "x-1",
    ]
    # The committed versions are one per racer (nothing committed twice, no clean-up commits).
    committed = [v for v in ds.versions() if v["version"] > 1]
    assert len(committed) == len(outcomes)


# ---------------------------------------------------------------------------------------------------
# 16 shards at once, transcode and depth commits interleaved (tests/harness/commit_soak.py)


def _check_round(report) -> None:
    assert report.violations == []
    assert report.commits == 16 + 2 + 16 + 1 + 4
    assert report.depth_writes == 16 + 20
    assert min(report.attempts) >= 1
    assert max(report.attempts) <= COMMIT_ATTEMPTS


def test_sixteen_shards_with_depth_interleaved_all_land_once_local(tmp_path: Path):
    _check_round(sixteen_shards(str(tmp_path / "t.lance")))


@pytest.mark.e2e
def test_sixteen_shards_with_depth_interleaved_all_land_once_on_s3(tmp_path: Path, s3_server: str):
    with moto_server(tmp_path, s3_server) as (bucket, options):
        _check_round(sixteen_shards(f"s3://{bucket}/t.lance", options))


# ---------------------------------------------------------------------------------------------------
# A commit that keeps conflicting


def test_a_commit_that_keeps_conflicting_gives_up_naming_the_shard_and_the_rival(tmp_path: Path):
    uri = str(tmp_path / "t.lance")
    commit_shard(uri, "victim", write_shard_fragments(_rows("victim", "start"), uri))
    attempts = []

    def attempt(number: int):
        attempts.append(number)
        ds = open_table(uri)
        mine = write_shard_fragments(_rows("victim", f"mine-{number}"), uri)
        # A rival run of the same shard lands between this attempt's read and its commit.
        commit_shard(
            uri,
            "victim",
            write_shard_fragments(_rows("victim", f"rival-{number}"), uri),
            properties={"step": "rival backfill"},
        )
        op = LanceOperation.Update(removed_fragment_ids=sorted(shard_fragment_ids(ds, "victim")), new_fragments=mine)
        return lance.LanceDataset.commit(uri, Transaction(ds.version, op), read_version=ds.version, max_retries=0)

    with pytest.raises(CommitContention) as caught:
        retry_commit("shard victim", uri, attempt, max_attempts=3)
    message = str(caught.value)
    assert attempts == [1, 2, 3]
    assert message.startswith(f"shard victim: gave up committing to {uri} after 3 attempts")
    assert "Update of shard victim (rival backfill) at version" in message
    assert len(caught.value.conflicts) == 3
    # The rivals' runs are what the table holds: the loser never landed, nothing twice.
    assert audit_versions(uri) == []
    assert {r["encoder"] for r in open_table(uri).to_table(columns=["encoder"]).to_pylist()} == {"rival-3"}


def test_an_error_that_is_not_a_conflict_is_not_retried(tmp_path: Path):
    calls = []

    def attempt(number: int):
        calls.append(number)
        raise ValueError("schema mismatch in shard y")

    with pytest.raises(ValueError, match="schema mismatch"):
        retry_commit("shard y", str(tmp_path / "t.lance"), attempt, max_attempts=5)
    assert calls == [1]


def test_a_first_run_whose_claim_was_rewritten_by_a_depth_write_retries_and_keeps_the_depth(tmp_path: Path):
    # The claim of a shard's first run is another shard's fragment, re-stated unchanged. If that
    # fragment's depth was written after the first run read it, re-stating the old metadata would
    # drop the depth: Lance must reject the commit (it is retried from the newest version).
    from kinetics_assets.table import ensure_depth_columns, write_depth

    uri = str(tmp_path / "t.lance")
    commit_shard(uri, "a", write_shard_fragments(_rows("a", "a-run"), uri))
    ensure_depth_columns(uri)
    read = open_table(uri)
    claim = [f.metadata for f in read.get_fragments()]
    write_depth(uri, [{"video_id": "a-0", "depth": b"d0", "depth_status": "ok"}])
    new = write_shard_fragments(_rows("b", "b-run"), uri)
    op = LanceOperation.Update(updated_fragments=claim, new_fragments=new)
    with pytest.raises(CommitConflictError):
        lance.LanceDataset.commit(uri, Transaction(read.version, op), read_version=read.version, max_retries=0)
    # commit_shard itself reads the newest version, so the same first run lands with the depth kept.
    commit_shard(uri, "b", new)
    rows = {
        r["video_id"]: r["depth_status"]
        for r in open_table(uri).to_table(columns=["video_id", "depth_status"]).to_pylist()
    }
    assert rows == {"a-0": "ok", "a-1": None, "b-0": None, "b-1": None}
    assert audit_versions(uri) == []
