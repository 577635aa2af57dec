"""Shard manifests and partition keys: bundled Kinetics lists and user manifests."""

from pathlib import Path

import pytest

from kinetics_assets.ingest.shards import ManifestError, custom_shards, get_shard, official_shards, partition_key
from kinetics_assets.settings import Settings, SettingsError

BASE = "https://mirror.example/kinetics/"


def test_official_lists_have_the_documented_shard_counts():
    assert len(official_shards("k400", BASE)) == 20
    assert len(official_shards("k600", BASE)) == 600
    k700 = official_shards("k700_2020", BASE)
    assert len(k700) == 700
    assert list(k700)[:2] == ["k700_val_001", "k700_val_002"]
    assert k700["k700_val_700"].url == BASE + "700_2020/val/k700_val_700.tar.gz"


def test_k600_class_names_become_safe_keys_and_map_back_to_encoded_urls():
    shards = official_shards("k600", BASE)
    shard = shards["passing_american_football_in_game"]
    assert shard.name == "passing American football (in game)"
    assert shard.url == BASE + "600/val/passing%20American%20football%20%28in%20game%29.tar.gz"
    assert all(key == partition_key(key) for key in shards)


def test_partition_key_rules():
    assert partition_key("massaging person's head") == "massaging_person_s_head"
    assert partition_key("part_3") == "part_3"
    with pytest.raises(ManifestError, match="no usable partition key"):
        partition_key("()")


def test_custom_manifest_of_archives(tmp_path: Path):
    manifest = tmp_path / "mine.txt"
    manifest.write_text("# comment\n\nhttp://127.0.0.1:9/a/shard_one.tar.gz\n  local/Shard Two.tgz  \n")
    shards = custom_shards(manifest)
    assert list(shards) == ["shard_one", "shard_two"]
    assert shards["shard_two"].url == str(tmp_path / "local" / "Shard Two.tgz")
    assert all(s.kind == "archive" for s in shards.values())


def test_custom_manifest_of_videos_is_one_shard(tmp_path: Path):
    manifest = tmp_path / "my clips.txt"
    manifest.write_text("http://127.0.0.1:9/v/a.mp4\nfile:///videos/b.webm\nc.mkv\n")
    shards = custom_shards(manifest)
    assert list(shards) == ["my_clips"]
    assert shards["my_clips"].kind == "videos"
    assert len(shards["my_clips"].urls) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://h/a.tar.gz\nhttp://h/b.mp4\n", "mixes archives and loose videos"),
        ("http://h/a.tar.gz\nhttp://h/a.tar.gz\n", "line 2: duplicate entry"),
        ("http://h/a.tar.gz\nhttp://h/archive.zip\n", "line 2: .*neither an archive"),
        ("ftp://h/a.tar.gz\n", "unsupported URL scheme"),
        ("http://h/readme.txt\n", "neither an archive"),
        ("# only a comment\n", "lists no archives or videos"),
        ("http://h/x/same.tar.gz\nhttp://h/y/same.tar.gz\n", "both map to partition key 'same'"),
    ],
)
def test_malformed_manifests_name_the_line(tmp_path: Path, text: str, message: str):
    manifest = tmp_path / "bad.txt"
    manifest.write_text(text)
    with pytest.raises(ManifestError, match=message):
        custom_shards(manifest)


def test_unknown_partition_key_names_the_key():
    shards = official_shards("k400", BASE)
    with pytest.raises(ManifestError, match="unknown shard 'part_99'"):
        get_shard(shards, "part_99")


def test_settings_from_env(tmp_path: Path):
    default = Settings.from_env({"KINETICS_DATA_ROOT": str(tmp_path)})
    assert default.release == "k700_2020"
    assert default.lance_uri == f"{tmp_path}/lance/k700_2020.lance"
    assert default.annotations_url == "https://s3.amazonaws.com/kinetics/700_2020/annotations/val.csv"
    mirror = Settings.from_env({"KINETICS_RELEASE": "k400", "KINETICS_BASE_URL": "http://127.0.0.1:1/k"})
    assert mirror.base_url == "http://127.0.0.1:1/k/"
    manifest = tmp_path / "m.txt"
    manifest.write_text("http://h/a.tar.gz\n")
    custom = Settings.from_env({"KINETICS_MANIFEST": str(manifest)})
    assert custom.release == "custom"
    assert custom.annotations_url is None
    with pytest.raises(SettingsError, match="KINETICS_RELEASE='k500'"):
        Settings.from_env({"KINETICS_RELEASE": "k500"})
    with pytest.raises(SettingsError, match=r"KINETICS_MANIFEST=.*no such file"):
        Settings.from_env({"KINETICS_MANIFEST": str(tmp_path / "missing.txt")})
