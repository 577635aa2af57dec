"""The near-duplicates of a table version, found and kept in their own small Lance table beside it.

`near_duplicates_uri` is the one place the side table's location is derived from the main table's:
`<name>.lance` -> `<name>.near_duplicates.lance`. It holds one row per video of a group (its
`duplicate_of`, its group's size, the pairs it is first of) and, in its schema metadata and on every
row, the main-table version it was found in.

Exactly once: a run reads the main table at one version and writes every group of that version in
one overwrite commit of the side table. A crashed run commits nothing; a re-run replaces the whole
answer, so no pair is ever written twice; a shard committed meanwhile is not in that version and is
compared on the next run. The main table is never written, so no shard commit can conflict with it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from kinetics_assets.dedup.groups import ClipInfo, DuplicateGroup, group_pairs
from kinetics_assets.dedup.pairs import Blocking, ClipHashes, DuplicatePair, fingerprint_pairs
from kinetics_assets.media.fingerprint import MatchConfig, from_stored
from kinetics_assets.table import open_table, table_exists

if TYPE_CHECKING:
    import lance

__all__ = [
    "NEAR_DUPLICATES_SCHEMA",
    "NearDuplicates",
    "duplicate_of",
    "find_near_duplicates",
    "near_duplicates_uri",
    "read_near_duplicates",
    "write_near_duplicates",
]

SOURCE_VERSION = "source_version"

PAIR_TYPE = pa.struct(
    [
        pa.field("other", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("offset_s", pa.float32()),
        pa.field("overlap_s", pa.float32()),
        pa.field("matched_s", pa.float32()),
        pa.field("mean_bits", pa.float32()),
    ]
)
NEAR_DUPLICATES_SCHEMA = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("duplicate_of", pa.string(), nullable=False),  # the group's keeper; itself for the keeper
        pa.field("group_size", pa.int32()),
        pa.field("pairs", pa.list_(PAIR_TYPE)),  # the pairs whose video_a this video is
        pa.field(SOURCE_VERSION, pa.int64()),
        pa.field("found_at", pa.timestamp("us", tz="UTC")),
        pa.field("settings", pa.string()),
    ]
)
FINGERPRINT_COLUMNS = ["video_id", "duration_s", "width", "height", "fingerprint", "fingerprint_fps"]


def near_duplicates_uri(lance_uri: str) -> str:
    """The side table of the table at `lance_uri`."""
    base = lance_uri.rstrip("/")
    base = base.removesuffix(".lance")
    return f"{base}.near_duplicates.lance"


@dataclass(frozen=True, kw_only=True)
class NearDuplicates:
    """The near-duplicates of one main-table version."""

    source_version: int
    groups: list[DuplicateGroup]
    settings: dict[str, Any]
    work: dict[str, int] = field(default_factory=dict)
    """Clips compared, candidate pairs aligned, band values skipped."""
    seconds: float = 0.0

    @property
    def pairs(self) -> list[DuplicatePair]:
        """Every pair, best first."""
        found = [p for g in self.groups for p in g.pairs]
        return sorted(found, key=lambda p: (-p.score, p.video_a, p.video_b, p.reason))

    @property
    def duplicates(self) -> int:
        """Videos a reader with drop_duplicates leaves out."""
        return sum(len(g.duplicates) for g in self.groups)


def find_near_duplicates(
    ds: lance.LanceDataset,
    *,
    match: MatchConfig = MatchConfig(),
    blocking: Blocking = Blocking(),
    extra_pairs: list[DuplicatePair] | None = None,
) -> NearDuplicates:
    """The fingerprint pairs of every ok, fingerprinted video of `ds` (a pinned version), plus
    `extra_pairs` found another way (embeddings), grouped.
    """
    started = time.monotonic()
    table = _fingerprinted(ds)
    rows = table.to_pylist()
    clips = [
        ClipHashes(video_id=r["video_id"], hashes=from_stored(r["fingerprint"]).tolist(), fps=r["fingerprint_fps"])
        for r in rows
    ]
    pairs, work = fingerprint_pairs(clips, match=match, blocking=blocking)
    pairs += extra_pairs or []
    info = {
        r["video_id"]: ClipInfo(
            video_id=r["video_id"], duration_s=r["duration_s"], width=r["width"], height=r["height"]
        )
        for r in rows
    }
    settings = {"match": asdict(match), "blocking": asdict(blocking), "extra_pairs": len(extra_pairs or [])}
    return NearDuplicates(
        source_version=ds.version,
        groups=group_pairs(pairs, info),
        settings=settings,
        work=dict(work),
        seconds=time.monotonic() - started,
    )


def _fingerprinted(ds: lance.LanceDataset) -> pa.Table:
    if "fingerprint" not in ds.schema.names:
        raise ValueError(f"{ds.uri} (version {ds.version}) has no fingerprint column: materialize clip_fingerprints")
    table = ds.to_table(
        columns=FINGERPRINT_COLUMNS, filter="status = 'ok' AND fingerprint_status = 'ok' AND fingerprint IS NOT NULL"
    )
    # One row per video_id: a duplicated id (the qa_report check's business) is compared once.
    first = pc.equal(pc.index_in(table["video_id"], table["video_id"]), pa.array(range(table.num_rows), pa.int32()))
    return table.filter(first)


def _rows(found: NearDuplicates) -> pa.Table:
    found_at = datetime.now(UTC)
    settings = json.dumps(found.settings, sort_keys=True)
    rows: list[dict[str, Any]] = []
    for group in found.groups:
        first_of: dict[str, list[dict[str, Any]]] = {}
        for p in group.pairs:
            pair = {k: v for k, v in asdict(p).items() if k not in ("video_a", "video_b")}
            first_of.setdefault(p.video_a, []).append({"other": p.video_b, **pair})
        rows.extend(
            {
                "video_id": v,
                "duplicate_of": group.keeper,
                "group_size": len(group.members),
                "pairs": first_of.get(v, []),
                SOURCE_VERSION: found.source_version,
                "found_at": found_at,
                "settings": settings,
            }
            for v in group.members
        )
    schema = NEAR_DUPLICATES_SCHEMA.with_metadata({SOURCE_VERSION: str(found.source_version)})
    return pa.Table.from_pylist(rows, schema=schema)


def write_near_duplicates(
    found: NearDuplicates, lance_uri: str, *, storage_options: dict[str, str] | None = None
) -> int:
    """Replace the side table of `lance_uri` with `found`, in one commit; its new version."""
    import lance

    ds = lance.write_dataset(
        _rows(found), near_duplicates_uri(lance_uri), mode="overwrite", storage_options=storage_options or None
    )
    return ds.version


@dataclass(frozen=True, kw_only=True)
class StoredNearDuplicates:
    """The side table as read: its rows, its version and the main-table version they are of."""

    table: pa.Table
    version: int
    source_version: int


def read_near_duplicates(
    lance_uri: str, *, storage_options: dict[str, str] | None = None
) -> StoredNearDuplicates | None:
    """The latest side table of `lance_uri`; None when near_duplicates has not run."""
    uri = near_duplicates_uri(lance_uri)
    if not table_exists(uri, storage_options):
        return None
    ds = open_table(uri, storage_options)
    metadata = ds.schema.metadata or {}
    return StoredNearDuplicates(
        table=ds.to_table(), version=ds.version, source_version=int(metadata[SOURCE_VERSION.encode()])
    )


def duplicate_of(lance_uri: str, *, storage_options: dict[str, str] | None = None) -> dict[str, str]:
    """video_id -> the video it duplicates, for every video of a group but its keeper ({} when none)."""
    stored = read_near_duplicates(lance_uri, storage_options=storage_options)
    if stored is None:
        return {}
    ids, keepers = stored.table["video_id"].to_pylist(), stored.table["duplicate_of"].to_pylist()
    return {v: k for v, k in zip(ids, keepers, strict=True) if v != k}
