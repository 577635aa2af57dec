"""Kinetics clip names and the annotations CSV that labels them.

Archive members are named `<youtube_id>_<start:06d>_<end:06d>.mp4`; K700-2020 puts them under a
`<class name>/` folder. The annotations CSV (`label,youtube_id,time_start,time_end,split`, older
releases add `is_cc`) joins on that same key.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_CLIP_STEM = re.compile(r"^(?P<youtube_id>.+)_(?P<start>\d{6})_(?P<end>\d{6})$")


@dataclass(frozen=True)
class ClipName:
    youtube_id: str
    time_start: int
    time_end: int
    folder: str | None
    """The class folder of K700-style archives, if any."""

    @property
    def video_id(self) -> str:
        return clip_key(self.youtube_id, self.time_start, self.time_end)


@dataclass(frozen=True)
class Annotation:
    label: str
    youtube_id: str
    time_start: int
    time_end: int
    split: str


def clip_key(youtube_id: str, time_start: int, time_end: int) -> str:
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}"


def parse_member_name(member: str) -> ClipName | None:
    """Parse an archive member path; None when it does not follow the Kinetics naming."""
    path = PurePosixPath(member)
    match = _CLIP_STEM.match(path.stem)
    if match is None:
        return None
    folder = path.parent.name or None
    return ClipName(match["youtube_id"], int(match["start"]), int(match["end"]), folder)


def video_id_for(member: str, shard_key: str) -> str:
    """Primary key of a member: the clip key, or shard and path for names that do not parse."""
    parsed = parse_member_name(member)
    if parsed is not None:
        return parsed.video_id
    return f"{shard_key}/{PurePosixPath(member).with_suffix('').as_posix()}"


class AnnotationsError(ValueError):
    """The annotations CSV cannot be read; the message names the file and line."""


def load_annotations(path: Path) -> dict[str, Annotation]:
    """Index an annotations CSV by clip key."""
    out: dict[str, Annotation] = {}
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"label", "youtube_id", "time_start", "time_end"} - set(reader.fieldnames or ())
        if missing:
            raise AnnotationsError(f"{path}: header lacks {', '.join(sorted(missing))}")
        for lineno, row in enumerate(reader, start=2):
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except (TypeError, ValueError):
                raise AnnotationsError(f"{path}:{lineno}: time_start/time_end are not numbers") from None
            note = Annotation(row["label"], row["youtube_id"], start, end, row.get("split") or "")
            out[clip_key(note.youtube_id, start, end)] = note
    return out
