"""One shard of the transcode step committed (or found unchanged) and its result built."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kinetics_assets.steps.transcode_checks import check_shard_rows
from kinetics_assets.steps.transcode_clip import PIPELINE_VERSION, encoder_settings, summary
from kinetics_assets.steps.transcode_result import TranscodeMode, TranscodeStepResult, clip_failures
from kinetics_assets.table import commit_shard, open_table, shard_rows

if TYPE_CHECKING:
    import lance

    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.steps.clip_window import ShardTranscodeOutcome
    from kinetics_assets.steps.transcode_source import ShardRun, ShardSource


def unchanged_result(
    ds: lance.LanceDataset, source: ShardSource, config: TranscodeConfig, started: float, *, max_failure_rate: float
) -> TranscodeStepResult | None:
    """The shard's result without doing anything, when its committed rows came from this input."""
    if source.sha256 is None:
        return None
    rows = shard_rows(
        ds,
        source.shard.key,
        ["video_id", "status", "error_type", "error_message", "encoder", "pipeline_version", "source_sha256"],
    ).to_pylist()
    encoder = encoder_settings(config)
    if not rows or any(
        (r["encoder"], r["pipeline_version"], r["source_sha256"]) != (encoder, PIPELINE_VERSION, source.sha256)
        for r in rows
    ):
        return None
    failures = clip_failures(summary(r) for r in rows)
    ids = [r["video_id"] for r in rows]
    result = TranscodeStepResult(
        shard=source.shard.key,
        mode="unchanged",
        members=len(rows),
        processed=0,
        kept=len(rows) - len(failures),
        ok=0,
        failed=len(failures),
        failures=failures,
        bytes_in=0,
        bytes_out=0,
        cpu_seconds=0.0,
        seconds=0.0,
        version=ds.version,
        commit_attempts=0,
    )
    # The rows are those an earlier run checked, decode included; the cheap checks run again.
    result.checks = check_shard_rows(ds, source.shard.key, ids, max_failure_rate=max_failure_rate, decode=False)
    result.seconds = time.monotonic() - started
    return result


def commit_run(
    run: ShardRun,
    outcome: ShardTranscodeOutcome,
    *,
    lance_uri: str,
    storage_options: dict | None,
    retry_failed_only: bool,
    properties: dict[str, str] | None,
    max_failure_rate: float,
) -> TranscodeStepResult:
    shard = run.source.shard
    processed_ids = {s.video_id for s in outcome.summaries}
    replace_ids = None
    if retry_failed_only:
        # Also drop rows of members that are gone from the source, so the shard mirrors it.
        stale = {r for r in run.previous_attempts if r not in set(run.member_ids)}
        replace_ids = processed_ids | stale
    mode: TranscodeMode = "retry_failed" if retry_failed_only else "full"
    commit = commit_shard(
        lance_uri,
        shard.key,
        outcome.fragments,
        replace_ids=replace_ids,
        storage_options=storage_options,
        properties={"step": "transcoded_videos", "mode": mode, **(properties or {})},
    )
    summaries = outcome.summaries
    failures = clip_failures(summaries)
    result = TranscodeStepResult(
        shard=shard.key,
        mode=mode,
        members=len(run.member_ids),
        processed=len(summaries),
        kept=len(run.kept & set(run.member_ids)),
        ok=sum(1 for s in summaries if s.status == "ok"),
        failed=len(failures),
        failures=failures,
        bytes_in=sum(s.source_bytes or 0 for s in summaries),
        bytes_out=sum(s.bytes or 0 for s in summaries),
        cpu_seconds=sum(s.cpu_seconds or 0.0 for s in summaries),
        seconds=0.0,
        version=commit.version,
        commit_attempts=commit.attempts,
        skipped=[{"member": s.name, "kind": s.kind, "reason": s.reason} for s in run.skipped if s.kind != "too_large"],
    )
    result.checks = check_shard_rows(
        open_table(lance_uri, storage_options, version=commit.version),
        shard.key,
        run.member_ids,
        max_failure_rate=max_failure_rate,
    )
    result.seconds = time.monotonic() - run.started
    return result
