"""What the transcode step reads of the raw step's output, so the transcoded_videos asset does no
step work of its own: each shard's verified source (staged from object storage while it is read)
with its sha256, the release's annotations, and how many clips to expect.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinetics_assets.ingest.annotations import Annotation, load_annotations
from kinetics_assets.steps.raw import fetch_annotations, local_source, verified_sha256, verified_video_count
from kinetics_assets.steps.transcode_source import ShardSource

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from kinetics_assets.ingest.shards import Shard


@dataclass(frozen=True, kw_only=True)
class TranscodeInputs:
    sources: list[ShardSource]
    annotations: dict[str, Annotation]
    expected_clips: int | None
    """Video members of all the shards' verified archives; None when any count is unknown."""


def transcode_inputs(
    shards: Sequence[Shard],
    *,
    data_root: str,
    storage_options: dict[str, str] | None,
    cache_dir: Path,
    local_root: Path,
    annotations_url: str | None,
    release: str,
) -> TranscodeInputs:
    """The inputs of `transcode_shards` for `shards` stored under `data_root`. Sources on object
    storage are staged in `cache_dir` while read, then removed; the annotations CSV is fetched once
    into `local_root` (none without `annotations_url`).
    """
    annotations = load_annotations(fetch_annotations(annotations_url, local_root, release)) if annotations_url else {}
    counts = [verified_video_count(shard, data_root, storage_options) for shard in shards]
    stage = functools.partial(local_source, data_root=data_root, storage_options=storage_options, cache_dir=cache_dir)
    sources = [
        ShardSource(shard, functools.partial(stage, shard), verified_sha256(shard, data_root, storage_options))
        for shard in shards
    ]
    known = [c for c in counts if c is not None]
    expected = sum(known) if len(known) == len(counts) else None
    return TranscodeInputs(sources=sources, annotations=annotations, expected_clips=expected)
