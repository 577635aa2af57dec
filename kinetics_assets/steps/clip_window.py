"""What the transcode step asks of whoever runs its clips: a window that takes the clips of many
shards and hands each shard back whole, its fragments written but not committed.

The step is handed an executor (`TranscodeExecutor`) rather than importing one, so its own logic
(skip rules, commits, retry-failed mode, failure isolation between shards) runs the same on Ray
(`distributed/transcode.py`) and in the calling process (`steps/in_process_transcode.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from kinetics_assets.steps.transcode_clip import ClipJob, ClipSummary

if TYPE_CHECKING:
    from lance.fragment import FragmentMetadata

    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.table.video_row import VideoRow

OnClip = Callable[[str, ClipSummary], None]
"""Called with the shard and the summary of each clip as it finishes."""


@dataclass(kw_only=True)
class ShardTranscodeOutcome:
    """One shard's clips, transcoded and written as fragments (not yet committed)."""

    shard: str
    fragments: list[FragmentMetadata] = field(default_factory=list)
    summaries: list[ClipSummary] = field(default_factory=list)
    seconds: float = 0.0


class ClipWindow(Protocol):
    """Clips of many shards in flight at once; shards come back whole, one by one.

    Use: `open_shard`, `submit` each clip, `close_shard` when the shard's source is exhausted (or
    `abandon` it when reading it failed), then `finish`. `submit`, `close_shard` and `finish` return
    the shards that completed meanwhile.
    """

    def open_shard(self, shard: str) -> None: ...

    def submit(self, shard: str, job: ClipJob, data: bytes) -> list[ShardTranscodeOutcome]: ...

    def add_rows(self, shard: str, rows: list[VideoRow]) -> None:
        """Rows made by the driver (clips that were never transcoded: failed downloads, limits)."""

    def close_shard(self, shard: str) -> list[ShardTranscodeOutcome]: ...

    def abandon(self, shard: str) -> None:
        """Drop a shard whose source failed midway: nothing of it is handed back."""

    def finish(self) -> list[ShardTranscodeOutcome]: ...


class TranscodeExecutor(Protocol):
    """Opens one window per step run, writing fragments of the table at `uri`."""

    def open_window(
        self, *, uri: str, storage_options: dict | None, config: TranscodeConfig, on_clip: OnClip
    ) -> ClipWindow: ...
