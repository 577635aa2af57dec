"""Removing old table versions (`cleanup_old_versions` and `kinetics cleanup`): the latest, recent and
tagged versions stay, and the files a killed run left behind go only when asked for."""

from __future__ import annotations

from pathlib import Path

import lance


def _shard_rows(shard: str, n: int, tag: str) -> list[dict]:
    return [{"video_id": f"{shard}/{tag}{i}", "shard": shard, "status": "ok", "video": bytes(10)} for i in range(n)]


def _data_files(uri: str) -> set[str]:
    return {p.name for p in (Path(uri) / "data").iterdir()}


def test_cleanup_keeps_the_latest_recent_and_tagged_versions(tmp_path):
    from datetime import timedelta

    from kinetics_assets.table import (
        cleanup_old_versions,
        commit_shard,
        ensure_table,
        write_shard_fragments,
    )

    uri = str(tmp_path / "t.lance")
    ensure_table(uri)
    commit_shard(uri, "a", write_shard_fragments(_shard_rows("a", 3, "x"), uri))
    tagged = commit_shard(uri, "b", write_shard_fragments(_shard_rows("b", 2, "x"), uri)).version
    lance.dataset(uri).tags.create("release-1", tagged)
    commit_shard(uri, "a", write_shard_fragments(_shard_rows("a", 3, "y"), uri))  # a re-run replaces shard a
    latest = commit_shard(uri, "b", write_shard_fragments(_shard_rows("b", 2, "y"), uri)).version
    # What a run killed before its commit leaves behind: data files no version refers to.
    orphans = {
        f.path.split("/")[-1] for frag in write_shard_fragments(_shard_rows("c", 2, "z"), uri) for f in frag.files
    }
    assert orphans <= _data_files(uri)

    nothing = cleanup_old_versions(uri, older_than=timedelta(hours=1))
    assert nothing.versions_removed == 0
    assert nothing.versions_left == list(range(1, latest + 1))

    result = cleanup_old_versions(uri, older_than=timedelta(0))
    assert result.versions_left == [tagged, latest]
    assert result.versions_removed == latest - 2
    assert result.bytes_removed > 0
    assert sorted(lance.dataset(uri).to_table(columns=["video_id"])["video_id"].to_pylist()) == [
        "a/y0", "a/y1", "a/y2", "b/y0", "b/y1"]  # fmt: skip
    # The tagged version still reads in full (its files were kept).
    old = lance.dataset(uri, version="release-1").to_table(columns=["video_id"])["video_id"].to_pylist()
    assert sorted(old) == ["a/x0", "a/x1", "a/x2", "b/x0", "b/x1"]
    # Files of a killed run are young, hence kept, unless asked for (only safe with no writer running).
    assert orphans <= _data_files(uri)
    cleanup_old_versions(uri, older_than=timedelta(0), delete_unverified=True)
    assert not orphans & _data_files(uri)

    untagged = cleanup_old_versions(uri, older_than=timedelta(0), keep_tagged=False)
    assert untagged.tags_removed == ["release-1"]
    assert untagged.versions_left == [latest]
    assert lance.dataset(uri).count_rows() == 5


def test_cleanup_command_lists_first_then_removes(tmp_path, capsys):
    from kinetics_assets.ops.cli import main
    from kinetics_assets.table import commit_shard, ensure_table, write_shard_fragments

    uri = str(tmp_path / "t.lance")
    ensure_table(uri)
    for letter in "wxyz":  # four runs of the same shard: versions 2-5, only 5 is current
        latest = commit_shard(uri, "a", write_shard_fragments(_shard_rows("a", 2, letter), uri)).version
    lance.dataset(uri).tags.create("release-1", 2)

    assert main(["cleanup", "--lance-uri", uri, "--older-than-days", "0"]) == 0
    out = capsys.readouterr().out
    assert f"latest {latest}" in out
    assert "release-1=2" in out
    assert f"to remove: 1, 3-{latest - 1}" in out
    assert "--yes" in out
    assert [v["version"] for v in lance.dataset(uri).versions()] == list(range(1, latest + 1))  # nothing yet

    assert main(["cleanup", "--lance-uri", uri, "--older-than-days", "0", "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"Removed {latest - 2} version(s)" in out
    assert f"Versions left: 2, {latest}" in out
    assert sorted(lance.dataset(uri).to_table(columns=["video_id"])["video_id"].to_pylist()) == ["a/z0", "a/z1"]

    assert main(["cleanup", "--lance-uri", str(tmp_path / "none.lance")]) == 2
    assert "none.lance" in capsys.readouterr().err
