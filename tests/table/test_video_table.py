"""The Lance table: per-shard commits replace a shard atomically and leave other shards alone."""

import threading
from pathlib import Path

import lance

from kinetics_assets.table import (
    VIDEO_SCHEMA,
    commit_shard,
    ensure_table,
    open_table,
    shard_rows,
    write_shard_fragments,
)


def _rows(shard: str, ids: list[str], status: str = "ok", payload: bytes = b"v") -> list[dict]:
    return [
        {"video_id": i, "shard": shard, "status": status, "video": payload + i.encode(), "bytes": len(payload) + len(i)}
        for i in ids
    ]


def _publish(uri: str, shard: str, rows: list[dict], **kwargs):
    return commit_shard(uri, shard, write_shard_fragments(rows, uri), **kwargs)


def _ids(uri: str, shard: str | None = None) -> list[str]:
    ds = open_table(uri)
    table = ds.to_table(columns=["video_id"], filter=f"shard = '{shard}'" if shard else None)
    return sorted(table["video_id"].to_pylist())


def test_table_declares_video_id_as_primary_key(tmp_path: Path):
    ds = ensure_table(str(tmp_path / "t.lance"))
    field = ds.schema.field("video_id")
    assert field.metadata[b"lance-schema:unenforced-primary-key"] == b"true"
    assert not field.nullable
    assert ds.count_rows() == 0
    assert set(VIDEO_SCHEMA.names) <= set(ds.schema.names)


def test_rerun_replaces_a_shard_and_keeps_others(tmp_path: Path):
    uri = str(tmp_path / "t.lance")
    _publish(uri, "a", _rows("a", ["a1", "a2"]))
    _publish(uri, "b", _rows("b", ["b1"]))
    result = _publish(uri, "a", _rows("a", ["a1", "a2", "a3"], payload=b"new"))
    assert result.removed_fragments == 1
    assert _ids(uri) == ["a1", "a2", "a3", "b1"]
    ds = open_table(uri)
    # The shard's old bytes are gone, the new ones are readable as blobs.
    row_ids = ds.to_table(columns=["video_id"], filter="shard = 'a'", with_row_id=True)["_rowid"].to_pylist()
    assert sorted(blob.read() for blob in ds.take_blobs("video", ids=row_ids)) == [b"newa1", b"newa2", b"newa3"]
    # Lineage: the commit says which shard it was.
    assert ds.read_transaction(ds.version).transaction_properties["shard"] == "a"


def test_retry_mode_deletes_only_the_replaced_rows(tmp_path: Path):
    uri = str(tmp_path / "t.lance")
    _publish(uri, "a", _rows("a", ["a1", "a2"]) + _rows("a", ["a3"], status="failed"))
    version_before = open_table(uri).version
    _publish(uri, "a", _rows("a", ["a3"], payload=b"fixed"), replace_ids={"a3"})
    ds = open_table(uri)
    rows = {r["video_id"]: r["status"] for r in shard_rows(ds, "a", ["video_id", "status"]).to_pylist()}
    assert rows == {"a1": "ok", "a2": "ok", "a3": "ok"}
    # The old version is still readable as it was (readers pinned to it see the failed row).
    old = open_table(uri, version=version_before)
    assert sorted(shard_rows(old, "a", ["status"])["status"].to_pylist()) == ["failed", "ok", "ok"]


def test_concurrent_shards_all_land_and_same_shard_never_duplicates(tmp_path: Path):
    uri = str(tmp_path / "t.lance")
    ensure_table(uri)
    errors = []

    def run(shard: str, tag: bytes):
        try:
            _publish(uri, shard, _rows(shard, [f"{shard}1", f"{shard}2"], payload=tag))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, b"x")) for s in "cdef"]
    threads += [threading.Thread(target=run, args=("c", bytes([65 + i]))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _ids(uri) == ["c1", "c2", "d1", "d2", "e1", "e2", "f1", "f2"]
    ds = lance.dataset(uri)
    assert ds.count_rows() == 8
    # Shard c holds the rows of exactly one of its racing runs, never a mix.
    row_ids = ds.to_table(columns=[], filter="shard = 'c'", with_row_id=True)["_rowid"].to_pylist()
    assert len({blob.read()[:1] for blob in ds.take_blobs("video", ids=row_ids)}) == 1
