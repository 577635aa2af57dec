"""What the transcode step reports for one shard: its mode, counts, failed clips and checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kinetics_assets.steps.checks import Verdicts
    from kinetics_assets.steps.transcode_clip import ClipSummary

TranscodeMode = Literal["full", "retry_failed", "unchanged"]
"""`full`: every clip transcoded; `retry_failed`: only failed or missing clips, ok rows kept;
`unchanged`: the shard was already committed from this input with these settings, nothing done."""


@dataclass(frozen=True, kw_only=True)
class ClipFailure:
    """A clip of the shard that has no video, and why."""

    video_id: str
    error_type: str | None
    error_message: str | None


def clip_failures(clips: Iterable[ClipSummary]) -> list[ClipFailure]:
    return [
        ClipFailure(video_id=c.video_id, error_type=c.error_type, error_message=c.error_message)
        for c in clips
        if c.status != "ok"
    ]


@dataclass
class TranscodeStepResult:
    shard: str
    mode: TranscodeMode
    members: int
    """Video members of the shard's source (the archive or video folder)."""
    processed: int
    kept: int
    """Ok rows kept from an earlier run (retry-failed mode)."""
    ok: int
    failed: int
    failures: list[ClipFailure]
    bytes_in: int
    bytes_out: int
    cpu_seconds: float
    seconds: float
    version: int
    commit_attempts: int
    checks: Verdicts = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    """Entries of the source that are not clips: {"member", "kind", "reason"} (unsafe, junk, ...)."""
