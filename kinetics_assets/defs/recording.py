"""Where step results become Dagster records: each shard's metadata, its check evaluations, and the
end of a many-shard step.

A run materializes one partition or a range of them. Every shard still commits on its own, and its
materialization and check results are recorded for its own partition. A shard that fails (or fails a
blocking check) does not stop the others; the step then fails at the end naming exactly the failed
partitions, so a re-launch of the failed partitions redoes only those.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from kinetics_assets.steps.failures import ShardFailure

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from kinetics_assets.ingest.download import DownloadResult
    from kinetics_assets.ingest.shards import Shard
    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.steps.checks import CheckSpec, Verdict, Verdicts
    from kinetics_assets.steps.raw import RawShard
    from kinetics_assets.steps.transcode_result import TranscodeStepResult

__all__ = [
    "ShardRecord",
    "collect",
    "finish_run",
    "markdown_table",
    "rate",
    "raw_record",
    "transcode_record",
]


@dataclass(frozen=True, kw_only=True)
class ShardRecord:
    """What one finished shard records for its partition: metadata and check verdicts."""

    partition: str
    metadata: dict[str, Any]
    verdicts: Verdicts


def markdown_table(rows: Sequence[Any], columns: list[str], limit: int = 50) -> str:
    """Rows (dicts or dataclasses) as a markdown table of `columns`, the first `limit` of them."""
    if not rows:
        return "_none_"
    rows = [dataclasses.asdict(r) if dataclasses.is_dataclass(r) and not isinstance(r, type) else r for r in rows]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows[:limit]:
        cells = [str(row.get(c, "")).replace("|", "\\|").replace("\n", " ")[:200] for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} more not shown_")
    return "\n".join(lines)


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------- per asset


def raw_record(raw: RawShard, shard: Shard) -> ShardRecord:
    seconds = sum(d.seconds for d in raw.downloads)
    total_bytes = sum(d.bytes for d in raw.downloads)
    sha256 = raw.downloads[0].sha256 if shard.kind == "archive" else _combined_sha(raw.downloads)
    metadata = {
        "url": dg.MetadataValue.url(shard.url) if shard.url.startswith("http") else shard.url,
        "path": raw.location,
        "bytes": total_bytes,
        "sha256": sha256,
        "seconds": round(seconds, 3),
        "MB/s": round(total_bytes / 1e6 / seconds, 2) if seconds > 0 else 0.0,
        "attempts": sum(d.attempts for d in raw.downloads),
        "resumed_bytes": sum(d.resumed_bytes for d in raw.downloads),
        "skipped_verified_copy": all(d.skipped for d in raw.downloads),
        "members": len(raw.index.members),
        "video_members": len(raw.index.video_members),
        "junk_skipped": len(raw.index.junk),
        "unsafe_skipped": len(raw.index.unsafe),
        "failed_downloads": len(raw.failed),
        "failed_download_list": dg.MetadataValue.md(markdown_table(raw.failed, ["name", "url", "error"])),
    }
    return ShardRecord(partition=raw.shard, metadata=metadata, verdicts=raw.checks(sha256=sha256))


def _combined_sha(downloads: Iterable[DownloadResult]) -> str:
    """One digest for a video-list shard: its videos' urls and digests, in url order."""
    digest = hashlib.sha256()
    for d in sorted(downloads, key=lambda d: d.url):
        digest.update(f"{d.url} {d.sha256}\n".encode())
    return digest.hexdigest()


def transcode_record(
    result: TranscodeStepResult, *, lance_uri: str, config: TranscodeConfig, upstream_sha: str
) -> ShardRecord:
    processed = max(result.processed, 1)
    metadata = {
        "lance_uri": lance_uri,
        "lance_version": result.version,
        "mode": result.mode,
        "rows_ok": result.ok + result.kept,
        "rows_failed": result.failed,
        "clips_processed": result.processed,
        "ok_rows_kept": result.kept,
        "failures": dg.MetadataValue.md(markdown_table(result.failures, ["video_id", "error_type", "error_message"])),
        "bytes_in": result.bytes_in,
        "bytes_out": result.bytes_out,
        "videos_per_s": round(result.processed / result.seconds, 3) if result.seconds else 0.0,
        "cpu_s_per_video": round(result.cpu_seconds / processed, 3),
        "seconds": round(result.seconds, 2),
        "commit_attempts": result.commit_attempts,
        "skipped_members_count": len(result.skipped),
        "skipped_members": dg.MetadataValue.md(markdown_table(result.skipped, ["member", "kind", "reason"])),
        "encoder": dg.MetadataValue.json(config.as_dict()),
        "upstream_sha256": upstream_sha,
    }
    return ShardRecord(partition=result.shard, metadata=metadata, verdicts=result.checks)


# ---------------------------------------------------------------------------------------------- end of a step


def _evaluation(key: dg.AssetKey, check: CheckSpec, verdict: Verdict, partition: str) -> dg.AssetCheckEvaluation:
    metadata = {k: (dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v) for k, v in verdict.details.items()}
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=check.name,
        passed=verdict.passed,
        metadata=metadata,
        severity=dg.AssetCheckSeverity[check.severity.upper()],
        blocking=check.blocking,
        partition=partition,
    )


def _blocked(checks: Sequence[CheckSpec], record: ShardRecord) -> str | None:
    """Why a finished shard counts as failed: its first failed blocking check, with the details."""
    for check in checks:
        verdict = record.verdicts.get(check.name)
        if check.blocking and verdict is not None and not verdict.passed:
            return f"blocking check {check.name} failed: {verdict.details}"
    return None


def collect(
    context: dg.AssetExecutionContext, results: Iterable[Any], record: Callable[[Any], ShardRecord]
) -> tuple[list[ShardRecord], dict[str, str]]:
    """The record of each shard the step finished, and the error of each that failed (logged)."""
    done: list[ShardRecord] = []
    failed: dict[str, str] = {}
    for result in results:
        if isinstance(result, ShardFailure):
            context.log.error(result.error)
            failed[result.shard] = result.error
        else:
            done.append(record(result))
    return done, failed


def finish_run(
    context: dg.AssetExecutionContext, *, checks: Sequence[CheckSpec], done: list[ShardRecord], failed: dict[str, str]
) -> Iterator:
    """Every shard has been tried: record each finished shard for its own partition, then fail the
    step if any shard failed (or failed a blocking check), naming each failed partition and why.

    With no failure, one MaterializeResult materializes every partition of the run, each with the
    metadata added for it, and the run's next steps go on. With failures, the finished partitions
    are materialized one by one and the step fails, so they stay materialized and only the failed
    ones show as failed (a step that fails skips the run's next steps, whatever partition).
    """
    key = context.asset_key
    blocked = {record.partition: cause for record in done if (cause := _blocked(checks, record))}
    failed = {**failed, **blocked}
    if not failed:
        for record in done:
            context.add_asset_metadata(record.metadata, partition_key=record.partition)
        yield dg.MaterializeResult()
    else:
        for record in done:
            yield dg.AssetMaterialization(asset_key=key, partition=record.partition, metadata=record.metadata)
    by_name = {c.name: c for c in checks}
    for record in done:
        for name, verdict in record.verdicts.items():
            yield _evaluation(key, by_name[name], verdict, record.partition)
    # The checks' own outputs, once per step (their results were recorded per partition above).
    for name, spec in context.assets_def.check_specs_by_output_name.items():
        if spec.key in context.selected_asset_check_keys:
            yield dg.Output(None, output_name=name)
    asset = key.to_user_string()
    total = len(context.partition_keys)
    context.log.info("%s: %d of %d partition(s) done, %d failed", asset, len(done), total, len(failed))
    if failed:
        lines = "\n".join(f"- {partition}: {cause}" for partition, cause in sorted(failed.items()))
        raise dg.Failure(
            description=f"{asset}: {len(failed)} of {total} partition(s) failed; the others are committed "
            f"and recorded. Re-launch the failed ones:\n{lines}",
            metadata={
                "failed_partitions": dg.MetadataValue.json(sorted(failed)),
                "failures": dg.MetadataValue.md(
                    markdown_table(
                        [{"partition": k, "cause": v} for k, v in sorted(failed.items())], ["partition", "cause"]
                    )
                ),
            },
            allow_retries=False,
        )
