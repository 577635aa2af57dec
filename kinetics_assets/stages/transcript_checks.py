"""The transcript stage's checks: the committed transcripts read back and judged against their videos."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kinetics_assets.steps.checks import (
    EVERY_OK_VIDEO_HAS_TRANSCRIPT_STATUS,
    TRANSCRIPT_SEGMENTS_WITHIN_CLIP,
    TRANSCRIPT_TEXT_EMPTY_WHEN_NOT_OK,
    Verdict,
    Verdicts,
)
from kinetics_assets.table import shard_ok_rows

if TYPE_CHECKING:
    import lance

_COLUMNS = ["video_id", "duration_s", "transcript_status", "transcript_text", "transcript_segments"]


def check_shard_transcripts(ds: lance.LanceDataset, shard: str) -> Verdicts:
    """Read the committed transcripts back and check them against the videos they came from."""
    rows = shard_ok_rows(ds, shard, _COLUMNS)
    without = [r["video_id"] for r in rows if r["transcript_status"] is None]
    misplaced = [r["video_id"] for r in rows if not _segments_in_clip(r["transcript_segments"] or [], r["duration_s"])]
    text_mismatch = [
        r["video_id"]
        for r in rows
        if r["transcript_status"] is not None and bool(r["transcript_text"]) != (r["transcript_status"] == "ok")
    ]
    return {
        EVERY_OK_VIDEO_HAS_TRANSCRIPT_STATUS.name: Verdict(
            not without, {"ok_videos": len(rows), "without_status": without[:20]}
        ),
        TRANSCRIPT_SEGMENTS_WITHIN_CLIP.name: Verdict(not misplaced, {"problems": misplaced[:20]}),
        TRANSCRIPT_TEXT_EMPTY_WHEN_NOT_OK.name: Verdict(not text_mismatch, {"problems": text_mismatch[:20]}),
    }


def _segments_in_clip(segments: list[dict[str, Any]], duration_s: float | None) -> bool:
    end_of_clip = float("inf") if duration_s is None else duration_s + 1e-3
    previous_end = 0.0
    for s in segments:
        if not (previous_end - 1e-6 <= s["start"] <= s["end"] <= end_of_clip):
            return False
        previous_end = s["end"]
    return True
