"""Near-duplicate groups and the one video each keeps: pairs joined into connected groups (a copy
of a copy is in its original's group), and per group one `duplicate_of` that every member points to.

The keeper is the longest clip (it holds the others' segments), then the largest picture, then the
smallest video_id, so that the choice never depends on the order the pairs were found in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from kinetics_assets.dedup.pairs import DuplicatePair

__all__ = ["ClipInfo", "DuplicateGroup", "group_pairs", "keeper_order"]


@dataclass(frozen=True, kw_only=True)
class ClipInfo:
    """What the keeper rule reads of a video."""

    video_id: str
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None


def keeper_order(info: ClipInfo) -> tuple[float, int, str]:
    """Sorts the keeper first: longest, then most pixels, then smallest video_id."""
    return (-(info.duration_s or 0.0), -((info.width or 0) * (info.height or 0)), info.video_id)


@dataclass(frozen=True, kw_only=True)
class DuplicateGroup:
    keeper: str
    """The `duplicate_of` of every member (the keeper's own too)."""
    members: tuple[str, ...]
    """Every video of the group, the keeper first, then by video_id."""
    pairs: tuple[DuplicatePair, ...]

    @property
    def duplicates(self) -> tuple[str, ...]:
        """The members a reader drops."""
        return self.members[1:]


def group_pairs(pairs: Iterable[DuplicatePair], clips: Mapping[str, ClipInfo]) -> list[DuplicateGroup]:
    """The connected groups of `pairs`, largest first then by keeper; a video `clips` lacks sorts last."""
    parent: dict[str, str] = {}

    def root(v: str) -> str:
        parent.setdefault(v, v)
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    pairs = list(pairs)
    for p in pairs:
        a, b = root(p.video_a), root(p.video_b)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[str, list[str]] = {}
    for v in parent:
        members.setdefault(root(v), []).append(v)
    by_root: dict[str, list[DuplicatePair]] = {}
    for p in pairs:
        by_root.setdefault(root(p.video_a), []).append(p)
    groups = []
    for r, videos in members.items():
        ranked = sorted(videos, key=lambda v: (v not in clips, *keeper_order(clips.get(v, ClipInfo(video_id=v)))))
        keeper = ranked[0]
        ordered = (keeper, *sorted(v for v in videos if v != keeper))
        found = sorted(by_root[r], key=lambda p: (-p.score, p.video_a, p.video_b, p.reason))
        groups.append(DuplicateGroup(keeper=keeper, members=ordered, pairs=tuple(found)))
    return sorted(groups, key=lambda g: (-len(g.members), g.keeper))
