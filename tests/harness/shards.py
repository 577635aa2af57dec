"""Kinetics-style shards for tests: `.tar.gz` archives of small clips, with the defects seen in the
wild, plus the annotations CSV that goes with them.

`build_shard` writes a K400-style flat archive or a K700-2020-style archive with `<class name>/`
folders; `build_video_list` writes loose clips and a manifest listing them (a "video list" shard).
Generated clips are 1 s and at most 320x240 so a shard builds in well under a second per clip.
"""

from __future__ import annotations

import csv
import io
import random
import shutil
import string
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.clips import make_clip

__all__ = ["CLASS_NAMES", "ShardSpec", "VideoListSpec", "build_shard", "build_video_list", "youtube_like_id"]

# Real Kinetics class names: spaces, parentheses and an apostrophe, as in the K700-2020 label list.
CLASS_NAMES = (
    "abseiling",
    "air drumming",
    "playing guitar",
    "tying knot (not on a tie)",
    "riding a bike",
    "massaging person's head",
)
# (width, height, fps, audio) cycled over the generated clips.
CLIP_VARIANTS = ((320, 240, 25, False), (240, 180, 30, True), (160, 120, 15, False), (320, 180, 24, True))
_ID_ALPHABET = string.ascii_letters + string.digits + "-_"
# AppleDouble header magic + version, as written by macOS into `._name` files.
_APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"Mac OS X        " + b"\x00" * 58


@dataclass(frozen=True)
class ShardSpec:
    """What a test can expect from a built shard. A video id is the member's file stem,
    `<youtube_id>_<start:06d>_<end:06d>`."""

    name: str
    archive_path: Path
    annotations_path: Path
    layout: str
    split: str
    members: list[str]  # every tar entry, in archive order (class folders included)
    video_members: list[str]  # entries archive.iter_video_members should yield, in order
    good_ids: list[str]  # clips that decode
    defective_ids: list[str]  # truncated, 0-byte and text-as-mp4 members
    junk_members: list[str]  # `._*` AppleDouble entries
    labels: dict[str, str]  # video id -> class name (good and defective)
    member_of: dict[str, str]  # video id -> member name
    sources: dict[str, str] = field(default_factory=dict)  # video id -> real clip file name (real mode)
    defects: dict[str, str] = field(default_factory=dict)  # video id -> "truncated" | "empty" | "not_video"

    @property
    def video_ids(self) -> list[str]:
        return list(self.member_of)


@dataclass(frozen=True)
class VideoListSpec:
    name: str
    manifest_path: Path  # one url or path per line
    clips_dir: Path
    entries: list[str]  # the manifest lines, in order
    clip_paths: list[Path]
    good_ids: list[str]
    defective_ids: list[str]
    labels: dict[str, str]
    annotations_path: Path


def add_tar_entry(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs) -> None:
    """Add any kind of entry (attrs set on the TarInfo: type, linkname, devmajor...), hostile ones included."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def youtube_like_id(rng: random.Random) -> str:
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(11))


def _video_id(rng: random.Random) -> str:
    start = rng.randrange(0, 300)
    return f"{youtube_like_id(rng)}_{start:06d}_{start + 10:06d}"


def _generated_clip(work: Path, index: int, seconds: float) -> bytes:
    width, height, fps, audio = CLIP_VARIANTS[index % len(CLIP_VARIANTS)]
    path = make_clip(work / f"clip{index}.mp4", width=width, height=height, fps=fps, seconds=seconds, audio=audio)
    return path.read_bytes()


def _real_clips(real_videos_dir: Path) -> list[Path]:
    clips = sorted(p for p in Path(real_videos_dir).iterdir() if p.is_file() and p.suffix.lower() != ".md")
    if not clips:
        raise FileNotFoundError(f"no clips in real_videos_dir {real_videos_dir}")
    return clips


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(mtime)
    tar.addfile(info)


def _write_annotations(path: Path, rows: list[tuple[str, str, int, int]], split: str) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        for label, youtube_id, start, end in rows:
            writer.writerow([label, youtube_id, start, end, split])


def _split_video_id(video_id: str) -> tuple[str, int, int]:
    youtube_id, start, end = video_id[:11], video_id[12:18], video_id[19:25]
    return youtube_id, int(start), int(end)


def build_shard(
    dest_dir: Path,
    name: str,
    *,
    n_clips: int = 4,
    layout: str = "flat",
    with_junk: bool = True,
    with_defects: bool = True,
    real_videos_dir: Path | None = None,
    clip_seconds: float = 1.0,
    seed: int = 0,
    split: str | None = None,
) -> ShardSpec:
    """Write `<dest_dir>/<name>.tar.gz` and `<dest_dir>/<name>_annotations.csv`.

    layout "flat" is K400 (split "validate"); "class_folders" is K700-2020 (split "val"). With
    `real_videos_dir`, every clip in that folder is packed (renamed Kinetics-style, made-up labels)
    in place of the generated ones."""
    if layout not in ("flat", "class_folders"):
        raise ValueError(f"layout must be 'flat' or 'class_folders', got {layout!r}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    split = split or ("validate" if layout == "flat" else "val")
    rng = random.Random(seed)
    mtime = time.time()
    work = dest_dir / f".{name}_work"
    work.mkdir(exist_ok=True)

    # (video id, label, bytes, defect or None, real source name or None)
    entries: list[tuple[str, str, bytes, str | None, str | None]] = []
    if real_videos_dir is not None:
        for i, clip in enumerate(_real_clips(Path(real_videos_dir))):
            entries.append((_video_id(rng), CLASS_NAMES[i % len(CLASS_NAMES)], clip.read_bytes(), None, clip.name))
    else:
        entries.extend(
            (_video_id(rng), CLASS_NAMES[i % len(CLASS_NAMES)], _generated_clip(work, i, clip_seconds), None, None)
            for i in range(n_clips)
        )
    if with_defects:
        sample = entries[0][2]
        defects = (
            ("truncated", sample[: max(1, len(sample) * 2 // 5)]),
            ("empty", b""),
            ("not_video", b"this is a text file, not a video\n"),
        )
        for j, (kind, data) in enumerate(defects):
            # Interleave defects between good clips, as they appear in real shards.
            position = min(len(entries), 1 + 2 * j)
            entries.insert(position, (_video_id(rng), CLASS_NAMES[(j + 1) % len(CLASS_NAMES)], data, kind, None))
    shutil.rmtree(work, ignore_errors=True)

    def member_name(video_id: str, label: str) -> str:
        return f"{label}/{video_id}.mp4" if layout == "class_folders" else f"{video_id}.mp4"

    archive_path = dest_dir / f"{name}.tar.gz"
    members: list[str] = []
    video_members: list[str] = []
    junk_members: list[str] = []
    member_of: dict[str, str] = {}
    labels: dict[str, str] = {}
    folders_written: set[str] = set()
    with tarfile.open(archive_path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for index, (video_id, label, data, _defect, _source) in enumerate(entries):
            if layout == "class_folders" and label not in folders_written:
                _add_dir(tar, label + "/", mtime)
                members.append(label)  # tarfile reports directory names without the slash
                folders_written.add(label)
            member = member_name(video_id, label)
            if with_junk and index == 0:
                junk = str(Path(member).with_name("._" + Path(member).name))
                _add_bytes(tar, junk, _APPLEDOUBLE, mtime)
                members.append(junk)
                junk_members.append(junk)
            _add_bytes(tar, member, data, mtime)
            members.append(member)
            video_members.append(member)
            member_of[video_id] = member
            labels[video_id] = label

    good = [e for e in entries if e[3] is None]
    annotations_path = dest_dir / f"{name}_annotations.csv"
    _write_annotations(annotations_path, [(label, *_split_video_id(video_id)) for video_id, label, *_ in good], split)
    return ShardSpec(
        name=name,
        archive_path=archive_path,
        annotations_path=annotations_path,
        layout=layout,
        split=split,
        members=members,
        video_members=video_members,
        good_ids=[e[0] for e in good],
        defective_ids=[e[0] for e in entries if e[3] is not None],
        junk_members=junk_members,
        labels=labels,
        member_of=member_of,
        sources={e[0]: e[4] for e in entries if e[4] is not None},
        defects={e[0]: e[3] for e in entries if e[3] is not None},
    )


def build_video_list(
    dest_dir: Path,
    name: str = "video_list",
    *,
    n_clips: int = 3,
    with_defects: bool = False,
    base_url: str | None = None,
    file_urls: bool = False,
    clip_seconds: float = 1.0,
    seed: int = 0,
    split: str = "val",
) -> VideoListSpec:
    """Write loose clips under `<dest_dir>/<name>/` and a manifest `<dest_dir>/<name>.txt`.

    Manifest lines are `<base_url>/<name>/<file>` when `base_url` is given (serve `dest_dir` with the
    test HTTP server), `file://` urls with `file_urls`, else plain paths. A defect, when asked for,
    is a truncated clip."""
    dest_dir = Path(dest_dir)
    clips_dir = dest_dir / name
    clips_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    clip_paths: list[Path] = []
    good: list[str] = []
    defective: list[str] = []
    labels: dict[str, str] = {}
    for i in range(n_clips):
        video_id = _video_id(rng)
        width, height, fps, audio = CLIP_VARIANTS[i % len(CLIP_VARIANTS)]
        path = make_clip(
            clips_dir / f"{video_id}.mp4", width=width, height=height, fps=fps, seconds=clip_seconds, audio=audio
        )
        clip_paths.append(path)
        good.append(video_id)
        labels[video_id] = CLASS_NAMES[i % len(CLASS_NAMES)]
    if with_defects:
        video_id = _video_id(rng)
        data = clip_paths[0].read_bytes()
        path = clips_dir / f"{video_id}.mp4"
        path.write_bytes(data[: len(data) * 2 // 5])
        clip_paths.append(path)
        defective.append(video_id)
        labels[video_id] = CLASS_NAMES[1]

    def entry(path: Path) -> str:
        if base_url is not None:
            return f"{base_url.rstrip('/')}/{path.relative_to(dest_dir).as_posix()}"
        if file_urls:
            return path.resolve().as_uri()
        return str(path)

    entries = [entry(p) for p in clip_paths]
    manifest_path = dest_dir / f"{name}.txt"
    manifest_path.write_text("".join(line + "\n" for line in entries))
    annotations_path = dest_dir / f"{name}_annotations.csv"
    _write_annotations(annotations_path, [(labels[v], *_split_video_id(v)) for v in good], split)
    return VideoListSpec(
        name=name,
        manifest_path=manifest_path,
        clips_dir=clips_dir,
        entries=entries,
        clip_paths=clip_paths,
        good_ids=good,
        defective_ids=defective,
        labels=labels,
        annotations_path=annotations_path,
    )
