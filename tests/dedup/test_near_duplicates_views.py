"""The near_duplicates asset through Dagster (in this process), then what reads its side table: the
`near_duplicates` QA view and `kinetics qa near_duplicates`, the QA report's sheet of pairs, and
the readers' `drop_duplicates`."""

from __future__ import annotations

import base64
import io
import re

import dagster as dg
import lance
import pytest
from PIL import Image

from kinetics_assets.dedup import find_near_duplicates, near_duplicates_uri, write_near_duplicates
from kinetics_assets.defs.near_duplicates import near_duplicates
from kinetics_assets.defs.qa_report import qa_report
from kinetics_assets.ops.cli import print_qa
from kinetics_assets.qa import open_qa, run_qa
from kinetics_assets.readers.table_clips import ClipFilters, ClipIndex
from resources import StorageResource
from tests.dedup.test_store import fingerprinted_table

PNG_IN_MARKDOWN = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")
DUPLICATES = {"s1-pan", "s1-pan-segment"}


def _materialize(asset: dg.AssetsDefinition, uri: str, root) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            [asset],
            instance=instance,
            resources={"storage": StorageResource(data_root=str(root), lance_uri=uri)},
            raise_on_error=False,
        )


@pytest.fixture(scope="module")
def found(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("near_duplicates")
    uri = fingerprinted_table(str(root / "videos.lance"))
    result = _materialize(near_duplicates, uri, root)
    assert result.success
    (event,) = result.get_asset_materialization_events()
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return {"uri": uri, "root": root, "metadata": event.materialization.metadata, "checks": checks}


def test_the_asset_records_the_pairs_groups_and_the_version_it_read(found):
    metadata = {k: v.value for k, v in found["metadata"].items()}
    assert (metadata["pairs"], metadata["groups"], metadata["duplicates"]) == (2, 1, 2)
    assert metadata["lance_version"] == lance.dataset(found["uri"]).version
    assert metadata["near_duplicates_uri"] == near_duplicates_uri(found["uri"])
    assert metadata["near_duplicates_version"] == lance.dataset(near_duplicates_uri(found["uri"])).version
    assert metadata["work_clips"] == metadata["ok_videos"] == 6
    assert found["checks"]["fingerprinted_ok_videos"].passed


def test_the_qa_view_and_command_list_the_pairs_with_their_keeper(found, capsys):
    con = open_qa(found["uri"])
    pairs = run_qa(con)["near_duplicates"].to_pylist()
    assert {(p["video_a"], p["video_b"]) for p in pairs} == {("s1-pan", "s1-pan-cropped"), ("s1-pan", "s1-pan-segment")}
    assert {p["duplicate_of"] for p in pairs} == {"s1-pan-cropped"}
    assert all(p["reason"] == "fingerprint" for p in pairs)
    assert print_qa(found["uri"], only="near_duplicates") == 0
    out = capsys.readouterr().out
    assert "[near_duplicates]" in out
    assert "s1-pan-segment" in out
    assert "[black_or_frozen]" not in out
    assert print_qa(found["uri"], only="no_such_query") == 2
    assert "no query 'no_such_query'" in capsys.readouterr().err


def test_the_qa_report_shows_the_top_pairs_side_by_side(found):
    result = _materialize(qa_report, found["uri"], found["root"])
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    (sheet,) = PNG_IN_MARKDOWN.findall(metadata["near_duplicate_sheet"].value)
    image = Image.open(io.BytesIO(base64.b64decode(sheet)))
    assert image.format == "PNG"
    assert image.height > image.width / 2  # two pairs, one a row
    assert len(metadata["near_duplicates"].value.records) == 2


def test_drop_duplicates_serves_each_group_once(found):
    uri = found["uri"]
    every = set(ClipIndex.build(uri).rows["video_id"].to_pylist())
    kept = set(ClipIndex.build(uri, filters=ClipFilters(drop_duplicates=True)).rows["video_id"].to_pylist())
    assert every - kept == DUPLICATES
    # Combined with the other filters: the duplicates of the chosen rows only.
    chosen = ClipFilters(where="duration_s >= 4", drop_duplicates=True)
    assert set(ClipIndex.build(uri, filters=chosen).rows["video_id"].to_pylist()) == {"s1-pan-cropped", "s1-other"}


def test_a_keeper_gone_from_the_table_keeps_its_duplicates_in(tmp_path):
    uri = fingerprinted_table(str(tmp_path / "videos.lance"))
    write_near_duplicates(find_near_duplicates(lance.dataset(uri)), uri)
    lance.dataset(uri).delete("video_id = 's1-pan-cropped'")
    kept = ClipIndex.build(uri, filters=ClipFilters(drop_duplicates=True)).rows["video_id"].to_pylist()
    assert set(kept) >= DUPLICATES


def test_a_table_without_fingerprints_fails_naming_the_asset_to_run(tmp_path):
    from datetime import UTC, datetime

    from kinetics_assets.table import commit_shard, write_shard_fragments

    uri = str(tmp_path / "bare.lance")
    row = {"video_id": "a", "shard": "s1", "status": "ok", "video": b"x", "processed_at": datetime.now(UTC)}
    commit_shard(uri, "s1", write_shard_fragments([row], uri))
    result = _materialize(near_duplicates, uri, tmp_path)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "materialize clip_fingerprints" in str(failure.event_specific_data.error)
