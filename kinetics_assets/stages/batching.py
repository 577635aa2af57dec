"""Which prepared videos go to the model together, decided once for every executor.

A model call takes videos of one `batch_key` (frames of one size stack into one tensor), oldest
first, up to `batch_size` of their `weight`; a video heavier than a batch goes alone (the model
batches inside it). A batch short of full waits for more videos unless the caller forces it out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kinetics_assets.stages.contract import Prepared


class Batcher:
    """Prepared videos waiting for a model call (with or without their payloads: the executor's choice)."""

    def __init__(self, batch_size: int) -> None:
        self._batch_size = max(batch_size, 1)
        self._waiting: list[Prepared[Any, Any]] = []

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, prepared: Prepared[Any, Any]) -> None:
        self._waiting.append(prepared)

    def take(self, *, force: bool) -> list[list[Prepared[Any, Any]]]:
        """The batches ready to go: full ones, and with `force` the rest too."""
        batches = []
        while self._waiting:
            batch = self._next_batch()
            if sum(p.weight for p in batch) < self._batch_size and not force:
                break
            for prepared in batch:
                self._waiting.remove(prepared)
            batches.append(batch)
        return batches

    def _next_batch(self) -> list[Prepared[Any, Any]]:
        key = self._waiting[0].batch_key
        batch: list[Prepared[Any, Any]] = []
        total = 0
        for prepared in self._waiting:
            if prepared.batch_key != key:
                continue
            if batch and total + prepared.weight > self._batch_size:
                break
            batch.append(prepared)
            total += prepared.weight
        return batch
