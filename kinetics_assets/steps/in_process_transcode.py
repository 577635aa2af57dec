"""The transcode step's executor without Ray: each clip is transcoded in the calling process, one
after another, by the same `process_clip` a Ray task runs.

For tests of the step's own logic and for small runs on one core; a shard is handed back, its
fragments written, when it is closed. A clip's time limit is the engine's own (`timeout_s`): there is
no task to cancel from outside, so no watchdog.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kinetics_assets.steps.clip_window import OnClip, ShardTranscodeOutcome
from kinetics_assets.steps.transcode_clip import ClipJob, process_clip, summary
from kinetics_assets.table import write_shard_fragments

if TYPE_CHECKING:
    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.table.video_row import VideoRow


@dataclass(frozen=True, kw_only=True)
class InProcessTranscodeExecutor:
    rows_per_fragment: int = 64
    """Rows (with their video bytes) held before they are written as one fragment of their shard."""

    def open_window(
        self, *, uri: str, storage_options: dict | None, config: TranscodeConfig, on_clip: OnClip
    ) -> InProcessTranscodeWindow:
        return InProcessTranscodeWindow(
            uri=uri,
            storage_options=storage_options,
            config=config,
            on_clip=on_clip,
            rows_per_fragment=self.rows_per_fragment,
        )


@dataclass(kw_only=True)
class _OpenShard:
    outcome: ShardTranscodeOutcome
    started: float
    rows: list[VideoRow] = field(default_factory=list)


class InProcessTranscodeWindow:
    """`steps.clip_window.ClipWindow` in the calling process: a clip is done when `submit` returns."""

    def __init__(
        self,
        *,
        uri: str,
        storage_options: dict | None,
        config: TranscodeConfig,
        on_clip: OnClip,
        rows_per_fragment: int,
    ) -> None:
        self._uri = uri
        self._storage_options = storage_options
        self._config = config
        self._on_clip = on_clip
        self._rows_per_fragment = rows_per_fragment
        self._shards: dict[str, _OpenShard] = {}

    def open_shard(self, shard: str) -> None:
        if shard in self._shards:
            raise ValueError(f"shard {shard} is already open in this window")
        self._shards[shard] = _OpenShard(outcome=ShardTranscodeOutcome(shard=shard), started=time.monotonic())

    def submit(self, shard: str, job: ClipJob, data: bytes) -> list[ShardTranscodeOutcome]:
        self._record(shard, process_clip(job, data, self._config))
        return []

    def add_rows(self, shard: str, rows: list[VideoRow]) -> None:
        for row in rows:
            self._record(shard, row)

    def close_shard(self, shard: str) -> list[ShardTranscodeOutcome]:
        state = self._shards.pop(shard)
        self._write(state)
        state.outcome.seconds = time.monotonic() - state.started
        return [state.outcome]

    def abandon(self, shard: str) -> None:
        self._shards.pop(shard, None)

    def finish(self) -> list[ShardTranscodeOutcome]:
        return [outcome for shard in list(self._shards) for outcome in self.close_shard(shard)]

    def _record(self, shard: str, row: VideoRow) -> None:
        state = self._shards[shard]
        clip = summary(row)
        state.outcome.summaries.append(clip)
        state.rows.append(row)
        self._on_clip(shard, clip)
        if len(state.rows) >= self._rows_per_fragment:
            self._write(state)

    def _write(self, state: _OpenShard) -> None:
        if state.rows:
            state.outcome.fragments.extend(write_shard_fragments(state.rows, self._uri, self._storage_options))
            state.rows = []
