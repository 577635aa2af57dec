"""Concurrent writers on one Lance table: racing runs of one shard never land twice, 16 shards with
transcode and depth commits interleaved all land (local and on a loopback S3 server), every version
ever committed is audited, and a commit that keeps conflicting gives up with an error naming it."""

from __future__ import annotations

import collections
import multiprocessing as mp
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import lance
import pytest
from lance import LanceOperation
from lance.dataset import Transaction

from kinetics_assets.video_table import (
    COMMIT_ATTEMPTS,
    CommitContention,
    commit_shard,
    ensure_depth_columns,
    ensure_table,
    open_table,
    retry_commit,
    shard_fragment_ids,
    write_depth,
    write_shard_fragments,
)
from tests.harness.processes import free_loopback_port, stop_process_group

ROWS_PER_SHARD = 2


def _rows(shard: str, run: str, ids: list[int] | None = None) -> list[dict]:
    return [
        {"video_id": f"{shard}-{i}", "shard": shard, "status": "ok", "encoder": run, "video": f"{run}:{i}".encode()}
        for i in (ids if ids is not None else range(ROWS_PER_SHARD))
    ]


def audit_versions(uri: str, storage_options: dict | None = None) -> list[str]:
    """Every version of the table: no video twice, and each shard whole and from exactly one run."""
    problems = []
    for entry in open_table(uri, storage_options).versions():
        version = entry["version"]
        rows = open_table(uri, storage_options, version=version).to_table(
            columns=["video_id", "shard", "encoder"]
        ).to_pylist()
        counts = collections.Counter(r["video_id"] for r in rows)
        twice = sorted(v for v, n in counts.items() if n > 1)
        if twice:
            problems.append(f"version {version}: {twice} more than once")
        by_shard: dict[str, list[dict]] = collections.defaultdict(list)
        for r in rows:
            by_shard[r["shard"]].append(r)
        for shard, shard_rows in by_shard.items():
            if len(shard_rows) != ROWS_PER_SHARD:
                problems.append(f"version {version}: shard {shard} has {len(shard_rows)} rows")
    return problems


# ---------------------------------------------------------------------------------------------------
# Two (or more) runs of the same shard at once, in separate processes


def _racer(uri: str, shard: str, run: str, retry_ids: list[int] | None, barrier, results) -> None:
    rows = _rows(shard, run, retry_ids)
    fragments = write_shard_fragments(rows, uri)
    barrier.wait(timeout=120)
    try:
        replace = {r["video_id"] for r in rows} if retry_ids is not None else None
        result = commit_shard(uri, shard, fragments, replace_ids=replace, properties={"step": run})
        results.put((run, "ok", result.attempts))
    except Exception as exc:  # reported to the parent and asserted there
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
        procs = [ctx.Process(target=_racer, args=(uri, s, run, ids, barrier, results)) for s, run, ids in racers]
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
        "other0-0", "other0-1", "other1-0", "other1-1", "x-0", "x-1",
    ]
    # The committed versions are one per racer (nothing committed twice, no clean-up commits).
    committed = [v for v in ds.versions() if v["version"] > 1]
    assert len(committed) == len(outcomes)


# ---------------------------------------------------------------------------------------------------
# 16 shards at once, transcode and depth commits interleaved


def _run_all(jobs: list) -> list:
    """Run the callables in threads released together; returns their results (or raises the first error)."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list = []

    def run(i, job):
        prepared = job()  # writes fragments before the start line
        barrier.wait(timeout=120)
        try:
            results[i] = prepared()
        except Exception as exc:  # collected and raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a writer thread did not finish"
    if errors:
        raise errors[0]
    return results


def _transcode_job(uri, options, shard, run):
    def prepare():
        fragments = write_shard_fragments(_rows(shard, run), uri, options)
        return lambda: ("commit", shard, commit_shard(uri, shard, fragments, storage_options=options,
                                                     properties={"step": "transcoded_videos", "run": run}))
    return prepare


def _depth_job(uri, options, shard):
    def prepare():
        ids = open_table(uri, options).to_table(columns=["video_id"], filter=f"shard = '{shard}'")["video_id"]
        rows = [{"video_id": v, "depth": f"depth:{v}".encode(), "depth_status": "ok"} for v in ids.to_pylist()]
        return lambda: ("depth", shard, write_depth(uri, rows, options))
    return prepare


def _sixteen_shards(uri: str, options: dict | None) -> None:
    shards = [f"s{i:02d}" for i in range(16)]
    ensure_table(uri, options)
    # 1. Sixteen first runs at once into the empty table, two of them raced by a second run.
    first = _run_all([_transcode_job(uri, options, s, f"{s}-first") for s in shards]
                     + [_transcode_job(uri, options, s, f"{s}-first-rival") for s in shards[:2]])
    ensure_depth_columns(uri, options)
    # 2. Sixteen re-runs at once, interleaved with depth writes of every shard, one re-run raced.
    second = _run_all([_transcode_job(uri, options, s, f"{s}-second") for s in shards]
                      + [_depth_job(uri, options, s) for s in shards]
                      + [_transcode_job(uri, options, shards[5], f"{shards[5]}-second-rival")])
    # 3. Depth of every shard at once.
    third = _run_all([_depth_job(uri, options, s) for s in shards])

    commits = [r[2] for r in first + second if r[0] == "commit"]
    assert len(commits) == 16 + 2 + 16 + 1
    assert max(c.attempts for c in commits) <= COMMIT_ATTEMPTS
    assert len(third) == 16
    assert audit_versions(uri, options) == []
    ds = open_table(uri, options)
    table = ds.to_table(columns=["video_id", "shard", "encoder", "depth_status", "depth"]).to_pylist()
    assert len(table) == 16 * ROWS_PER_SHARD
    runs = {r["shard"]: {row["encoder"] for row in table if row["shard"] == r["shard"]} for r in table}
    for shard in shards:
        allowed = {f"{shard}-second"} | ({f"{shard}-second-rival"} if shard == shards[5] else set())
        assert len(runs[shard]) == 1 and runs[shard] <= allowed, (shard, runs[shard])
    assert all(r["depth_status"] == "ok" and r["depth"] == f"depth:{r['video_id']}".encode() for r in table)


def test_sixteen_shards_with_depth_interleaved_all_land_once_local(tmp_path: Path):
    _sixteen_shards(str(tmp_path / "t.lance"), None)


@pytest.fixture(scope="module")
def s3_options(tmp_path_factory):
    """moto's S3 server on a free loopback port (its own process group, stopped at the end) and a bucket."""
    import boto3  # from moto[server], a test dependency

    port = free_loopback_port()
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                              region_name="us-east-1")
        for _ in range(300):  # up to ~30 s for the server to answer
            try:
                client.list_buckets()
                break
            except Exception:
                if proc.poll() is not None:
                    pytest.fail(f"moto server exited with {proc.returncode}")
                threading.Event().wait(0.1)
        else:
            pytest.fail(f"moto server did not answer on {endpoint}")
        bucket = f"commits-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket)
        yield bucket, {"aws_endpoint": endpoint, "aws_access_key_id": "test", "aws_secret_access_key": "test",
                       "aws_region": "us-east-1", "allow_http": "true"}
    finally:
        stop_process_group(proc.pid, grace_s=10, leader=proc)
        log.close()


def test_sixteen_shards_with_depth_interleaved_all_land_once_on_s3(s3_options):
    bucket, options = s3_options
    _sixteen_shards(f"s3://{bucket}/t.lance", options)


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
        commit_shard(uri, "victim", write_shard_fragments(_rows("victim", f"rival-{number}"), uri),
                     properties={"step": "rival backfill"})
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
