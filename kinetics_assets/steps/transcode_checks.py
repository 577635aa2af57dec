"""The transcode step's checks of one committed shard, read back from the table."""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, cast

from kinetics_assets.media.decode import first_frame_size
from kinetics_assets.steps.checks import (
    BLOB_SIZES_POSITIVE,
    FAILURE_RATE,
    OK_ROWS_DECODE,
    ONE_ROW_PER_MEMBER,
    VIDEO_ID_UNIQUE,
    Verdict,
    Verdicts,
)
from kinetics_assets.table import shard_ok_rows, shard_rows

if TYPE_CHECKING:
    import lance


def check_shard_rows(
    ds: lance.LanceDataset, shard: str, member_ids: list[str], *, max_failure_rate: float, decode: bool = True
) -> Verdicts:
    """Verify the committed shard against its source; each check reads the table back. Without
    `decode` the ok videos are not opened again (rows an earlier run already decoded).
    """
    rows = shard_rows(ds, shard, ["video_id", "status", "bytes", "width", "height", "frames"]).to_pylist()
    ids = [r["video_id"] for r in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    missing = sorted(set(member_ids) - set(ids))
    extra = sorted(set(ids) - set(member_ids))
    ok_rows = [r for r in rows if r["status"] == "ok"]
    failed = len(rows) - len(ok_rows)
    rate = failed / len(rows) if rows else 0.0
    bad_sizes = [r["video_id"] for r in ok_rows if not r["bytes"] or r["bytes"] <= 0]
    undecodable = _undecodable(ds, shard, ok_rows) if decode else []
    return {
        ONE_ROW_PER_MEMBER.name: Verdict(
            not missing and not extra and len(rows) == len(member_ids),
            {"members": len(member_ids), "rows": len(rows), "missing": missing[:20], "extra": extra[:20]},
        ),
        VIDEO_ID_UNIQUE.name: Verdict(not duplicates, {"duplicates": duplicates[:20]}),
        FAILURE_RATE.name: Verdict(
            rate <= max_failure_rate, {"failed": failed, "rows": len(rows), "rate": rate, "max": max_failure_rate}
        ),
        OK_ROWS_DECODE.name: Verdict(
            not undecodable,
            {
                "checked": len(ok_rows) if decode else 0,
                "problems": undecodable[:20],
                **({} if decode else {"decoded_when_committed": True}),
            },
        ),
        BLOB_SIZES_POSITIVE.name: Verdict(not bad_sizes, {"empty": bad_sizes[:20]}),
    }


def _undecodable(ds: lance.LanceDataset, shard: str, ok_rows: list[dict]) -> list[str]:
    """Open every ok video and decode its first frame; its size must match the row."""
    if not ok_rows:
        return []
    ids = shard_ok_rows(ds, shard, ["video_id"], with_row_id=True)
    by_id = {r["video_id"]: r for r in ok_rows}
    problems = []
    blobs = ds.take_blobs("video", ids=[r["_rowid"] for r in ids])
    for video_id, blob in zip((r["video_id"] for r in ids), blobs, strict=True):
        row = by_id[video_id]
        if blob is None:  # a null blob: an ok row without its video
            problems.append(f"{video_id}: the row has no video bytes")
            continue
        try:
            width, height = first_frame_size(cast("BinaryIO", blob))  # a Lance blob is a readable file
            if (width, height) != (row["width"], row["height"]):
                problems.append(f"{video_id}: decodes at {width}x{height}, row says {row['width']}x{row['height']}")
        except Exception as exc:  # noqa: BLE001 - any decoder failure is what this check reports
            problems.append(f"{video_id}: {type(exc).__name__}: {exc}")
    return problems
