"""How a many-shard step reports a shard it could not do, shared by every step so none reaches into
another for it.
"""

from __future__ import annotations

from dataclasses import dataclass


class UpstreamMissing(RuntimeError):  # noqa: N818 - names the partition's state; the public name callers catch
    """The step's input has not been materialized for this partition."""


@dataclass(frozen=True)
class ShardFailure:
    """One shard of a many-shard step that failed as a whole; nothing of it was committed, and the
    other shards went on. `error` names the shard and the cause.
    """

    shard: str
    error: str
