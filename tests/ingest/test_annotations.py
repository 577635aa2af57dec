"""Clip names and the annotations CSV."""

from pathlib import Path

import pytest

from kinetics_assets.ingest.annotations import AnnotationsError, load_annotations, parse_member_name, video_id_for


def test_parse_member_names():
    flat = parse_member_name("--07WQ2iBlw_000001_000011.mp4")
    assert (flat.youtube_id, flat.time_start, flat.time_end, flat.folder) == ("--07WQ2iBlw", 1, 11, None)
    nested = parse_member_name("playing guitar/ab_cd_efghi_000035_000045.mp4")
    assert nested.youtube_id == "ab_cd_efghi"
    assert nested.folder == "playing guitar"
    assert nested.video_id == "ab_cd_efghi_000035_000045"
    assert parse_member_name("notes.mp4") is None
    assert parse_member_name("abc_12_000045.mp4") is None


def test_unparsable_members_get_a_shard_scoped_id():
    assert video_id_for("odd/name.mp4", "part_3") == "part_3/odd/name"
    assert video_id_for("x/abcdefghijk_000001_000011.mp4", "part_3") == "abcdefghijk_000001_000011"


def test_load_annotations_with_and_without_is_cc(tmp_path: Path):
    csv_path = tmp_path / "val.csv"
    csv_path.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        '"passing American football (in game)",abcdefghijk,1,11,validate,0\n'
        "abseiling,zzzzzzzzzzz,35.0,45.0,validate,0\n"
    )
    notes = load_annotations(csv_path)
    assert notes["abcdefghijk_000001_000011"].label == "passing American football (in game)"
    assert notes["zzzzzzzzzzz_000035_000045"].split == "validate"


def test_bad_annotations_name_file_and_line(tmp_path: Path):
    bad = tmp_path / "val.csv"
    bad.write_text("label,youtube_id\nx,y\n")
    with pytest.raises(AnnotationsError, match="header lacks time_end, time_start"):
        load_annotations(bad)
    bad.write_text("label,youtube_id,time_start,time_end,split\nx,y,one,2,val\n")
    with pytest.raises(AnnotationsError, match=r"val.csv:2: time_start"):
        load_annotations(bad)
