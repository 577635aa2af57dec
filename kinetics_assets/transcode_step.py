"""The `transcoded_videos` step for one shard: archive members -> Ray -> one Lance commit.

Plain orchestration (no Dagster): the asset passes in where things are and how to log.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import av
import lance

from kinetics_assets.annotations import Annotation
from kinetics_assets.archive import SkippedMember, iter_video_members
from kinetics_assets.clip_processing import ClipJob, failed_row, make_job
from kinetics_assets.limits import DEFAULT_LIMITS, Limits
from kinetics_assets.raw_step import FAILED_DOWNLOADS, UpstreamMissing
from kinetics_assets.ray_transcode import RayTranscodeOptions, transcode_shard
from kinetics_assets.shards import Shard
from kinetics_assets.transcode import TranscodeConfig
from kinetics_assets.video_table import commit_shard, ensure_table, open_table, shard_rows, write_shard_fragments


@dataclass
class TranscodeStepResult:
    shard: str
    mode: str
    members: int
    """Video members of the shard's source (the archive or video folder)."""
    processed: int
    kept: int
    """Ok rows kept from an earlier run (retry-failed mode)."""
    ok: int
    failed: int
    failures: list[dict]
    bytes_in: int
    bytes_out: int
    cpu_seconds: float
    seconds: float
    version: int
    commit_attempts: int
    checks: dict[str, tuple[bool, dict]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    """Entries of the source that are not clips: {"member", "kind", "reason"} (unsafe, junk, ...)."""


def _clips(
    source: Path,
    shard: Shard,
    annotations: dict[str, Annotation],
    skip_ids: set[str],
    previous_attempts: dict[str, int],
    member_ids: list[str],
    limits: Limits,
    skipped: list[SkippedMember],
) -> Iterator[tuple[ClipJob, bytes]]:
    seen: set[str] = set()
    members = iter_video_members(source, label=shard.key, max_member_bytes=limits.max_member_bytes,
                                 max_total_bytes=limits.max_shard_read_bytes, on_skip=skipped.append)
    for member, data in members:
        job = make_job(member, shard=shard.key, release=shard.release, source_url=_source_url(shard, member), annotations=annotations)
        if job.video_id in seen:
            # Two members with one clip name (e.g. in two class folders): keep both, keyed by path.
            unique = f"{shard.key}/{PurePosixPath(member).with_suffix('').as_posix()}"
            job = ClipJob(**{**job.__dict__, "video_id": unique})
        seen.add(job.video_id)
        member_ids.append(job.video_id)
        if job.video_id in skip_ids:
            continue
        attempts = previous_attempts.get(job.video_id, 0) + 1
        if attempts != job.attempts:
            job = ClipJob(**{**job.__dict__, "attempts": attempts})
        yield job, data


def _failed_download_rows(source: Path, shard: Shard, annotations, config: TranscodeConfig, skip_ids: set[str]) -> list[dict]:
    record = source / FAILED_DOWNLOADS if source.is_dir() else None
    if record is None or not record.exists():
        return []
    rows = []
    for failure in json.loads(record.read_text()):
        job = make_job(failure["name"], shard=shard.key, release=shard.release, source_url=failure["url"], annotations=annotations)
        if job.video_id not in skip_ids:
            rows.append(failed_row(job, config, "download_failed", f"{shard.key}: {failure['url']}: {failure['error']}"))
    return rows


def _too_large_rows(skipped: list[SkippedMember], shard: Shard, annotations, config: TranscodeConfig, skip_ids: set[str]) -> list[dict]:
    """Members over max_member_bytes were never read: each is a failed row, the shard goes on."""
    rows = []
    for entry in skipped:
        if entry.kind != "too_large":
            continue
        job = make_job(entry.name, shard=shard.key, release=shard.release, source_url=_source_url(shard, entry.name), annotations=annotations)
        if job.video_id not in skip_ids:
            rows.append(failed_row(job, config, "limit_exceeded", f"{shard.key}/{entry.reason}", entry.size))
    return rows


def _source_url(shard: Shard, member: str) -> str:
    if shard.kind == "archive":
        return shard.url
    by_name = {PurePosixPath(url).name: url for url in shard.urls}
    return by_name.get(PurePosixPath(member).name, member)


def transcode_step(
    shard: Shard,
    source: Path,
    *,
    lance_uri: str,
    storage_options: dict | None,
    annotations: dict[str, Annotation],
    config: TranscodeConfig,
    retry_failed_only: bool = False,
    options: RayTranscodeOptions = RayTranscodeOptions(),
    properties: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
    limits: Limits = DEFAULT_LIMITS,
) -> TranscodeStepResult:
    """Transcode a shard's clips and replace its rows in the table in one commit.

    Of `limits`, the archive-reading ones apply here (the frame limits travel in `config`): a member
    over max_member_bytes becomes a failed `limit_exceeded` row, and a source over
    max_shard_read_bytes raises ArchiveLimitExceeded before anything is committed."""
    if not source.exists():
        raise UpstreamMissing(
            f"shard {shard.key}: no verified download at {source}; materialize raw_archives for this "
            "partition first (or select '*transcoded_videos' to include everything upstream)"
        )
    started = time.monotonic()
    ds = ensure_table(lance_uri, storage_options)
    skip_ids: set[str] = set()
    previous_attempts: dict[str, int] = {}
    if retry_failed_only:
        old = shard_rows(ds, shard.key, ["video_id", "status", "attempts"]).to_pylist()
        skip_ids = {r["video_id"] for r in old if r["status"] == "ok"}
        previous_attempts = {r["video_id"]: r["attempts"] or 1 for r in old}
        log(f"shard {shard.key}: retry-failed mode keeps {len(skip_ids)} ok rows")

    member_ids: list[str] = []
    skipped: list[SkippedMember] = []
    counter = collections.Counter()

    def on_clip(row: dict) -> None:
        counter[row["status"]] += 1
        done = sum(counter.values())
        if row["status"] != "ok":
            log(f"shard {shard.key}: {row['video_id']} failed ({row['error_type']}): {row['error_message']}")
        if done % 25 == 0:
            log(f"shard {shard.key}: {done} clips transcoded ({counter['ok']} ok, {counter['failed']} failed)")

    outcome = transcode_shard(
        _clips(source, shard, annotations, skip_ids, previous_attempts, member_ids, limits, skipped),
        uri=lance_uri,
        storage_options=storage_options,
        config=config,
        options=options,
        on_clip=on_clip,
    )
    # Videos of a video-list shard that could not be downloaded, and members over the size limit,
    # are failed rows too.
    download_failures = _failed_download_rows(source, shard, annotations, config, skip_ids)
    download_failures += _too_large_rows(skipped, shard, annotations, config, skip_ids)
    if download_failures:
        outcome.fragments.extend(write_shard_fragments(download_failures, lance_uri, storage_options))
        for row in download_failures:
            member_ids.append(row["video_id"])
            outcome.summaries.append({k: row.get(k) for k in ("video_id", "status", "error_type", "error_message")}
                                     | {"source_bytes": None, "bytes": None, "cpu_seconds": 0.0, "frames": None})
    processed_ids = {s["video_id"] for s in outcome.summaries}
    replace_ids = None
    if retry_failed_only:
        # Also drop rows of members that are gone from the source, so the shard mirrors it.
        stale = {r for r in previous_attempts if r not in set(member_ids)}
        replace_ids = processed_ids | stale
    commit = commit_shard(
        lance_uri,
        shard.key,
        outcome.fragments,
        replace_ids=replace_ids,
        storage_options=storage_options,
        properties={"step": "transcoded_videos", "mode": "retry_failed" if retry_failed_only else "full", **(properties or {})},
    )
    summaries = outcome.summaries
    failures = [s for s in summaries if s["status"] != "ok"]
    result = TranscodeStepResult(
        shard=shard.key,
        mode="retry_failed" if retry_failed_only else "full",
        members=len(member_ids),
        processed=len(summaries),
        kept=len(skip_ids & set(member_ids)),
        ok=sum(1 for s in summaries if s["status"] == "ok"),
        failed=len(failures),
        failures=failures,
        bytes_in=sum(s["source_bytes"] or 0 for s in summaries),
        bytes_out=sum(s["bytes"] or 0 for s in summaries),
        cpu_seconds=sum(s["cpu_seconds"] or 0.0 for s in summaries),
        seconds=time.monotonic() - started,
        version=commit.version,
        commit_attempts=commit.attempts,
        skipped=[{"member": s.name, "kind": s.kind, "reason": s.reason} for s in skipped if s.kind != "too_large"],
    )
    result.checks = check_shard_rows(
        open_table(lance_uri, storage_options, version=commit.version), shard.key, member_ids
    )
    return result


def check_shard_rows(ds: lance.LanceDataset, shard: str, member_ids: list[str]) -> dict[str, tuple[bool, dict]]:
    """Verify the committed shard against its source; each check reads the table back."""
    rows = shard_rows(ds, shard, ["video_id", "status", "bytes", "width", "height", "frames"]).to_pylist()
    ids = [r["video_id"] for r in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    missing = sorted(set(member_ids) - set(ids))
    extra = sorted(set(ids) - set(member_ids))
    ok_rows = [r for r in rows if r["status"] == "ok"]
    failed = len(rows) - len(ok_rows)
    bad_sizes = [r["video_id"] for r in ok_rows if not r["bytes"] or r["bytes"] <= 0]
    undecodable = _undecodable(ds, shard, ok_rows)
    return {
        "one_row_per_member": (
            not missing and not extra and len(rows) == len(member_ids),
            {"members": len(member_ids), "rows": len(rows), "missing": missing[:20], "extra": extra[:20]},
        ),
        "video_id_unique": (not duplicates, {"duplicates": duplicates[:20]}),
        "failure_rate": (True, {"failed": failed, "rows": len(rows), "rate": failed / len(rows) if rows else 0.0}),
        "ok_rows_decode": (not undecodable, {"checked": len(ok_rows), "problems": undecodable[:20]}),
        "blob_sizes_positive": (not bad_sizes, {"empty": bad_sizes[:20]}),
    }


def _undecodable(ds: lance.LanceDataset, shard: str, ok_rows: list[dict]) -> list[str]:
    """Open every ok video and decode its first frame; its size must match the row."""
    if not ok_rows:
        return []
    table = ds.to_table(columns=["video_id"], filter=f"shard = '{shard.replace(chr(39), chr(39) * 2)}' AND status = 'ok'", with_row_id=True)
    by_id = {r["video_id"]: r for r in ok_rows}
    problems = []
    blobs = ds.take_blobs("video", ids=table["_rowid"].to_pylist())
    for video_id, blob in zip(table["video_id"].to_pylist(), blobs):
        row = by_id[video_id]
        try:
            with av.open(blob) as container:
                frame = next(container.decode(video=0))
                if (frame.width, frame.height) != (row["width"], row["height"]):
                    problems.append(f"{video_id}: decodes at {frame.width}x{frame.height}, row says {row['width']}x{row['height']}")
        except Exception as exc:  # any decoder failure is what this check reports
            problems.append(f"{video_id}: {type(exc).__name__}: {exc}")
    return problems
