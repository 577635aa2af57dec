"""Concurrent writers on one Lance table: many shards committing at once, with depth writes and
same-shard rivals interleaved, and every version the table ever had audited afterwards.

`sixteen_shards(uri, storage_options)` runs one round: (1) one first run per shard, all released
at once into the empty table, two shards raced by a second run; (2) a re-run of every shard,
interleaved with a depth write of every shard, one re-run raced, and first runs of 4 new shards
(whose claim, the lowest fragment, is a fragment those depth writes rewrite); (3) the depth of
every shard at once. It returns a `RoundReport` whose `violations` lists what went wrong (empty when all landed
once): a version holding a video twice or a shard not whole, a shard not from exactly one allowed
run, rows without their depth. `moto_server()` starts moto's S3 server on loopback for the S3 case.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kinetics_assets.table import (
    commit_shard,
    ensure_depth_columns,
    ensure_table,
    open_table,
    write_depth,
    write_shard_fragments,
)
from tests.harness.moto import running_moto_server

if TYPE_CHECKING:
    from pathlib import Path

ROWS_PER_SHARD = 2
NEW_SHARDS = 4  # first runs during the second phase


def shard_rows(shard: str, run: str, ids: list[int] | None = None) -> list[dict]:
    """Rows of one run of a shard; the run's name is kept in `encoder` so a reader can tell runs apart."""
    return [
        {"video_id": f"{shard}-{i}", "shard": shard, "status": "ok", "encoder": run, "video": f"{run}:{i}".encode()}
        for i in (ids if ids is not None else range(ROWS_PER_SHARD))
    ]


def twice_and_by_shard(rows: list[dict]) -> tuple[list[str], dict[str, list[dict]]]:
    """The video ids a table holds more than once, and its rows grouped by shard."""
    counts = collections.Counter(r["video_id"] for r in rows)
    by_shard: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        by_shard[r["shard"]].append(r)
    return sorted(v for v, n in counts.items() if n > 1), by_shard


def audit_versions(uri: str, storage_options: dict | None = None) -> list[str]:
    """Every version of the table: no video twice, each shard whole and from exactly one run, and no
    commit drops the depth of a row it did not replace (same video, same run, depth gone)."""
    problems = []
    depth_before: dict[tuple[str, str], bool] = {}
    for entry in open_table(uri, storage_options).versions():
        version = entry["version"]
        ds = open_table(uri, storage_options, version=version)
        columns = ["video_id", "shard", "encoder"] + (["depth_status"] if "depth_status" in ds.schema.names else [])
        rows = ds.to_table(columns=columns).to_pylist()
        depth_now = {(r["video_id"], r["encoder"]): r.get("depth_status") == "ok" for r in rows}
        lost = sorted(key[0] for key, had in depth_before.items() if had and depth_now.get(key) is False)
        if lost:
            problems.append(f"version {version}: depth of {lost} gone although their rows were not replaced")
        depth_before = depth_now
        twice, by_shard = twice_and_by_shard(rows)
        if twice:
            problems.append(f"version {version}: {twice} more than once")
        for shard, rows_of_shard in by_shard.items():
            if len(rows_of_shard) != ROWS_PER_SHARD:
                problems.append(f"version {version}: shard {shard} has {len(rows_of_shard)} rows")
    return problems


def run_together(jobs: list) -> list:
    """Each job prepares (writes its fragments), then all are released at once on threads."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list = []

    def run(i, job):
        prepared = job()
        barrier.wait(timeout=120)
        try:
            results[i] = prepared()
        except Exception as exc:  # noqa: BLE001 - collected and raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    if any(t.is_alive() for t in threads):
        raise RuntimeError("a writer thread did not finish within 300 s")
    if errors:
        raise errors[0]
    return results


def _transcode_job(uri, options, shard, run):
    def prepare():
        fragments = write_shard_fragments(shard_rows(shard, run), uri, options)
        return lambda: (
            "commit",
            shard,
            commit_shard(
                uri, shard, fragments, storage_options=options, properties={"step": "transcoded_videos", "run": run}
            ),
        )

    return prepare


def _depth_job(uri, options, shard):
    def prepare():
        ids = open_table(uri, options).to_table(columns=["video_id"], filter=f"shard = '{shard}'")["video_id"]
        rows = [{"video_id": v, "depth": f"depth:{v}".encode(), "depth_status": "ok"} for v in ids.to_pylist()]
        return lambda: ("depth", shard, write_depth(uri, rows, options))

    return prepare


@dataclass
class RoundReport:
    shards: int
    commits: int = 0
    depth_writes: int = 0
    attempts: list[int] = field(default_factory=list)
    versions: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0


def sixteen_shards(uri: str, storage_options: dict | None = None, shards: int = 16) -> RoundReport:
    started = time.monotonic()
    names = [f"s{i:02d}" for i in range(shards)]
    options = storage_options
    ensure_table(uri, options)
    first = run_together(
        [_transcode_job(uri, options, s, f"{s}-first") for s in names]
        + [_transcode_job(uri, options, s, f"{s}-first-rival") for s in names[:2]]
    )
    ensure_depth_columns(uri, options)
    raced = names[min(5, shards - 1)]
    late = [f"n{i:02d}" for i in range(NEW_SHARDS)]
    second = run_together(
        [_transcode_job(uri, options, s, f"{s}-second") for s in names]
        + [_depth_job(uri, options, s) for s in names]
        + [_transcode_job(uri, options, raced, f"{raced}-second-rival")]
        + [_transcode_job(uri, options, s, f"{s}-first") for s in late]
    )
    third = run_together([_depth_job(uri, options, s) for s in names + late])

    report = RoundReport(shards=shards)
    results = first + second + third
    report.attempts = [r[2].attempts for r in results if r[0] == "commit"]
    report.commits = len(report.attempts)
    report.depth_writes = sum(1 for r in results if r[0] == "depth")
    report.violations += audit_versions(uri, options)
    ds = open_table(uri, options)
    report.versions = len(ds.versions())
    table = ds.to_table(columns=["video_id", "shard", "encoder", "depth_status", "depth"]).to_pylist()
    expected_rows = (shards + NEW_SHARDS) * ROWS_PER_SHARD
    if len(table) != expected_rows:
        report.violations.append(f"latest version holds {len(table)} rows, expected {expected_rows}")
    for shard in names + late:
        runs = {r["encoder"] for r in table if r["shard"] == shard}
        allowed = (
            {f"{shard}-first"}
            if shard in late
            else ({f"{shard}-second"} | ({f"{shard}-second-rival"} if shard == raced else set()))
        )
        if len(runs) != 1 or not runs <= allowed:
            report.violations.append(
                f"shard {shard} holds rows of runs {sorted(runs)}, expected one of {sorted(allowed)}"
            )
    no_depth = [
        r["video_id"] for r in table if r["depth_status"] != "ok" or r["depth"] != f"depth:{r['video_id']}".encode()
    ]
    if no_depth:
        report.violations.append(f"rows without their depth after the last depth round: {no_depth}")
    report.seconds = round(time.monotonic() - started, 1)
    return report


@contextmanager
def moto_server(log_dir: Path, endpoint: str | None = None):
    """A fresh bucket on moto's S3 server: the one at `endpoint` when given (the tests' session
    server), else one started here for the duration; yields (bucket, storage_options)."""
    import boto3  # from moto[server], a test dependency

    with contextlib.ExitStack() as stack:
        if endpoint is None:
            endpoint = stack.enter_context(running_moto_server(log_dir))
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 - moto takes any key
            region_name="us-east-1",
        )
        bucket = f"commits-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=bucket)
        yield (
            bucket,
            {
                "aws_endpoint": endpoint,
                "aws_access_key_id": "test",
                "aws_secret_access_key": "test",
                "aws_region": "us-east-1",
                "allow_http": "true",
            },
        )
