"""`kinetics search` over a real Lance table with an embedding column: by example as JSON and as a
table, with filters; the errors it exits 2 with. The text path: tests/ops/test_text_search.py."""

from __future__ import annotations

import json

import pytest

from kinetics_assets.ops.cli import main
from kinetics_assets.search import search_clips
from tests.harness.embeddings import clip_ids, embedded_shard

WIDTH = 32


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("cli") / "t.lance")
    for seed, shard in enumerate(("part_0", "part_1")):
        embedded_shard(uri, shard, 40, width=WIDTH, seed=seed, failed=2)
    return uri


def test_like_as_json_is_what_search_clips_returns(uri, capsys):
    target = clip_ids("part_0", 40)[5]
    assert main(["search", "--like", target, "--top", "4", "--json", "--lance-uri", uri]) == 0
    hits = json.loads(capsys.readouterr().out)
    expected = search_clips(uri, like=target, top=4)
    assert [h["video_id"] for h in hits] == [h.video_id for h in expected]
    assert target not in [h["video_id"] for h in hits]
    assert set(hits[0]) == {"video_id", "label", "shard", "split", "time_start", "time_end", "duration_s", "score"}
    assert hits[0]["score"] == pytest.approx(expected[0].score)


def test_table_output_with_label_and_shard_filters(uri, capsys):
    target = clip_ids("part_0", 40)[5]
    code = main(
        [
            "search",
            "--like",
            target,
            "--label",
            "abseiling",
            "--label",
            "air drumming",
            "--shard",
            "part_1",
            "--lance-uri",
            uri,
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["#", "score", "video_id", "label", "shard", "source", "s"]
    rows = lines[1:]
    assert rows
    assert all("part_1" in row and ("abseiling" in row or "air drumming" in row) for row in rows)
    # 40 clips cycle over 6 labels: 7 + 7 of the two labels, less part_1's 2 failed (one of each).
    assert len(rows) == 12


def test_errors_exit_2_and_say_why(uri, capsys):
    assert main(["search", "--lance-uri", uri]) == 2
    assert "give either TEXT or --like" in capsys.readouterr().err
    assert main(["search", "--like", "nope", "--lance-uri", uri]) == 2
    assert "no video 'nope'" in capsys.readouterr().err
    assert main(["search", "--like", "x", "--lance-uri", uri + ".missing"]) == 2
    assert "no Lance table" in capsys.readouterr().err
