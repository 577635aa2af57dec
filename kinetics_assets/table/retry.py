"""The one retry policy of every commit loop of the table, and the error it gives up with."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, TypeVar

from lance.commit import CommitConflictError
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from kinetics_assets.table.dataset import open_table

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
T = TypeVar("T")

COMMIT_ATTEMPTS = 30
"""Attempts of one commit (each re-reads the newest version) before it gives up with CommitContention."""
COMMIT_BACKOFF_S = (0.05, 2.0)
"""Jittered exponential backoff between attempts: first wait up to 0.05 s, never more than 2 s."""


class CommitContention(RuntimeError):  # noqa: N818 - public name, caught by name in the steps and tests
    """A commit still conflicted after its last attempt; names what it was and what kept conflicting."""

    def __init__(self, what: str, uri: str, attempts: int, conflicts: list[str]) -> None:
        self.what, self.uri, self.attempts, self.conflicts = what, uri, attempts, conflicts
        counts: dict[str, int] = {}
        for c in conflicts:
            counts[c] = counts.get(c, 0) + 1
        kept = "; ".join(f"{c} (x{n})" if n > 1 else c for c, n in counts.items()) or "nothing recorded"
        super().__init__(
            f"{what}: gave up committing to {uri} after {attempts} attempts, each preempted by a concurrent "
            f"commit; what kept conflicting: {kept}"
        )


def _is_conflict(exc: BaseException) -> bool:
    if isinstance(exc, CommitConflictError):
        return getattr(exc, "retryable", True)
    # Lance reports an exhausted internal retry or a lost race for the next manifest as an OSError.
    return isinstance(exc, OSError) and any(
        word in str(exc).lower() for word in ("conflict", "concurrent", "contention")
    )


_CONFLICT_VERSION = re.compile(r"transaction (\w+) at version (\d+)")


def _describe_conflict(uri: str, exc: BaseException, storage_options: dict[str, str] | None) -> str:
    """Which commit preempted this one: its shard and step when it recorded them, else its operation."""
    match = _CONFLICT_VERSION.search(str(exc))
    if not match:
        return str(exc).split(",")[0][:200]
    operation, version = match.group(1), int(match.group(2))
    try:
        txn = open_table(uri, storage_options).read_transaction(version)
    except (OSError, ValueError):
        txn = None
    props = (txn.transaction_properties or {}) if txn is not None else {}
    if props.get("shard"):
        step = props.get("step")
        return f"{operation} of shard {props['shard']}" + (f" ({step})" if step else "") + f" at version {version}"
    mode = getattr(txn.operation, "update_mode", "") if txn is not None else ""
    label = "a column rewrite (depth or transcript write)" if "column" in str(mode).lower() else operation
    return f"{label} at version {version}"


def retry_commit(
    what: str,
    uri: str,
    attempt: Callable[[int], T],
    storage_options: dict[str, str] | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> T:
    """Run `attempt(n)` until it commits, under the one retry policy of this table.

    Each attempt must read the newest version itself. A retryable commit conflict waits (jittered,
    exponential, capped) and tries again; after `max_attempts` the commit fails with
    CommitContention, which names `what` (the shard) and the commits that preempted it. Any
    other error is raised at once.
    """
    if max_attempts < 1:
        raise ValueError(f"{what}: max_attempts must be >= 1, got {max_attempts}")
    conflicts: list[str] = []

    def record(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None and _is_conflict(exc):
            conflicts.append(_describe_conflict(uri, exc, storage_options))
            log.info("%s: commit conflict on attempt %d: %s", what, state.attempt_number, conflicts[-1])

    retrying = Retrying(
        stop=stop_after_attempt(max_attempts),
        wait=wait_random_exponential(multiplier=COMMIT_BACKOFF_S[0], max=COMMIT_BACKOFF_S[1]),
        retry=retry_if_exception(_is_conflict),
        after=record,
        reraise=False,
    )
    try:
        for trial in retrying:
            with trial:
                return attempt(trial.retry_state.attempt_number)
    except RetryError as exc:
        raise CommitContention(what, uri, max_attempts, conflicts) from exc.last_attempt.exception()
    raise AssertionError("unreachable: tenacity either returns an attempt's result or raises")
