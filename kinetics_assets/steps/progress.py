"""Progress of a long step: a log line every few seconds (count, rate, time left) for the Dagster log,
and a progress bar when the step runs in a terminal (`dagster asset materialize` in a shell).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from collections.abc import Callable


class Progress:
    """Counts `unit`s done out of `total` (None when unknown); optionally frames too."""

    def __init__(
        self, log: Callable[[str], None], what: str, unit: str, total: int | None, every_s: float = 10.0
    ) -> None:
        self._log, self._what, self._unit, self._every_s = log, what, unit, every_s
        self.total = total
        self.done = 0
        self.frames = 0
        self._started = self._last = time.monotonic()
        # Shown only on a terminal: a step launched by the daemon logs, it does not draw.
        self._bar = tqdm(
            total=total, desc=what, unit=unit, leave=False, disable=not sys.stderr.isatty(), file=sys.stderr
        )

    def skipped(self, count: int) -> None:
        """`count` units need no work after all (already done): the total shrinks."""
        if self.total is not None:
            self.total = max(self.total - count, 0)
            self._bar.total = self.total
            self._bar.refresh()

    def advance(self, frames: int = 0) -> None:
        self.done += 1
        self.frames += frames
        self._bar.update(1)
        now = time.monotonic()
        if now - self._last < self._every_s and self.done != self.total:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        line = f"{self._what}: {self.done}"
        if self.total is not None:
            line += f"/{self.total}"
        line += f" {self._unit}s, {self.done / elapsed:.2f} {self._unit}s/s"
        if self.frames:
            line += f", {self.frames} frames, {self.frames / elapsed:.1f} frames/s"
        if self.total:
            line += f", about {(self.total - self.done) * elapsed / self.done:.0f} s left"
        self._log(line)
        if self.done == self.total:
            self.close()

    def close(self) -> None:
        self._bar.close()
