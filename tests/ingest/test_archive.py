"""kinetics_assets.ingest.archive on real archives: generated shards, damaged copies, hostile members."""

from __future__ import annotations

import functools
import gzip
import io
import logging
import os
import random
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from kinetics_assets.ingest.archive import ArchiveError, iter_video_members, verify_archive
from tests.harness.shards import add_tar_entry, build_shard

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def flat_shard(tmp_path_factory):
    return build_shard(tmp_path_factory.mktemp("flat"), "part_0", n_clips=4, layout="flat")


@pytest.fixture(scope="module")
def folder_shard(tmp_path_factory):
    return build_shard(tmp_path_factory.mktemp("k700"), "k700_val_003", n_clips=4, layout="class_folders", seed=3)


def _tar_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _members_by_tarfile(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}


# ---------------------------------------------------------------------------------------------- good archives


@pytest.mark.parametrize("which", ["flat_shard", "folder_shard"])
def test_verify_indexes_a_good_shard(request, which):
    spec = request.getfixturevalue(which)
    index = verify_archive(spec.archive_path, label=spec.name)
    assert index.members == spec.members
    assert index.video_members == spec.video_members
    assert index.junk == spec.junk_members
    assert len(index.junk) == 1
    assert index.unsafe == []
    assert index.total_bytes == sum(len(b) for b in _members_by_tarfile(spec.archive_path).values())


@pytest.mark.parametrize("which", ["flat_shard", "folder_shard"])
def test_iter_yields_video_members_in_order_with_their_bytes(request, which):
    spec = request.getfixturevalue(which)
    expected = _members_by_tarfile(spec.archive_path)
    yielded = list(iter_video_members(spec.archive_path, label=spec.name))
    assert [name for name, _ in yielded] == spec.video_members
    for name, data in yielded:
        assert data == expected[name]
    # Defective clips are still yielded (the decoder decides); junk never is.
    defect_sizes = {spec.defects[v]: len(expected[spec.member_of[v]]) for v in spec.defective_ids}
    assert defect_sizes["empty"] == 0
    assert defect_sizes["truncated"] > 0
    assert not any(Path(name).name.startswith("._") for name, _ in yielded)


def test_plain_uncompressed_tar_is_accepted(tmp_path):
    path = tmp_path / "plain.tar"
    path.write_bytes(_tar_bytes([("a.mp4", b"1" * 10), ("b.webm", b"2" * 20)]))
    assert verify_archive(path).video_members == ["a.mp4", "b.webm"]
    assert [n for n, _ in iter_video_members(path)] == ["a.mp4", "b.webm"]


# ---------------------------------------------------------------------------------------------- damaged archives


def _damaged(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _assert_archive_error(path: Path, *words: str) -> None:
    with pytest.raises(ArchiveError) as info:
        verify_archive(path, label="part_4")
    message = str(info.value)
    assert "part_4" in message
    assert str(path) in message
    for word in words:
        assert word.lower() in message.lower()


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_gzip_is_rejected(flat_shard, tmp_path, keep):
    data = flat_shard.archive_path.read_bytes()
    _assert_archive_error(_damaged(tmp_path, "cut.tar.gz", data[: int(len(data) * keep)]), "truncated")


def test_missing_gzip_trailer_is_rejected(flat_shard, tmp_path):
    data = flat_shard.archive_path.read_bytes()
    _assert_archive_error(_damaged(tmp_path, "notrailer.tar.gz", data[:-8]), "truncated")


def test_bad_crc_is_rejected(flat_shard, tmp_path):
    data = bytearray(flat_shard.archive_path.read_bytes())
    data[-8] ^= 0x01  # first byte of the CRC32 trailer
    _assert_archive_error(_damaged(tmp_path, "crc.tar.gz", bytes(data)), "crc")


def test_corrupt_deflate_data_is_rejected(flat_shard, tmp_path):
    data = bytearray(flat_shard.archive_path.read_bytes())
    rng = random.Random(5)
    for offset in rng.sample(range(100, len(data) - 100), 20):
        data[offset] ^= 0xFF
    _assert_archive_error(_damaged(tmp_path, "bits.tar.gz", bytes(data)))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", ("HTML",)),
        (b"PK\x03\x04 a zip file", ("not a gzip",)),
        (b"", ("empty",)),
    ],
)
def test_non_archive_input_is_rejected(tmp_path, content, words):
    _assert_archive_error(_damaged(tmp_path, "x.tar.gz", content), *words)


def test_corrupt_tar_header_inside_valid_gzip_is_rejected(tmp_path):
    raw = bytearray(_tar_bytes([("a.mp4", b"a" * 1000), ("b.mp4", b"b" * 1000), ("c.mp4", b"c" * 1000)]))
    second_header = 512 + 1024  # header + 1000 bytes padded to two blocks
    raw[second_header + 5] ^= 0xFF  # breaks the header checksum
    _assert_archive_error(_damaged(tmp_path, "hdr.tar.gz", gzip.compress(bytes(raw))), "corrupt tar header")


def test_tar_without_end_marker_is_rejected(tmp_path):
    raw = _tar_bytes([("a.mp4", b"a" * 1000), ("b.mp4", b"b" * 1000)])
    cut = raw[: 2 * (512 + 1024)]  # both members, none of the end-of-archive blocks
    _assert_archive_error(_damaged(tmp_path, "noend.tar.gz", gzip.compress(cut)), "end-of-archive")


def test_iter_reports_damage_and_is_lazy(tmp_path):
    """Members before the damage are yielded first (streaming), then the error is raised."""
    rng = random.Random(1)
    members = [(f"{i}.mp4", rng.randbytes(300_000)) for i in range(6)]
    compressed = gzip.compress(_tar_bytes(members))
    path = _damaged(tmp_path, "cut.tar.gz", compressed[: len(compressed) * 6 // 10])
    got: list[str] = []

    def read_all() -> None:
        for name, data in iter_video_members(path, label="part_6"):
            assert data == dict(members)[name]
            got.append(name)

    with pytest.raises(ArchiveError, match="truncated"):
        read_all()
    assert got
    assert got == ["0.mp4", "1.mp4", "2.mp4"][: len(got)]


def test_iter_rejects_non_archive_on_first_use(tmp_path):
    path = _damaged(tmp_path, "page.tar.gz", b"<html>quota exceeded</html>")
    with pytest.raises(ArchiveError, match="HTML"):
        next(iter_video_members(path, label="part_8"))


# ---------------------------------------------------------------------------------------------- junk and unsafe


def _hostile_archive(path: Path) -> None:
    with tarfile.open(path, "w:gz") as tar:
        add = functools.partial(add_tar_entry, tar)

        add("good_a.mp4", b"A" * 100)
        add("._good_a.mp4", b"\x00\x05\x16\x07appledouble")
        add("__MACOSX/._good_a.mp4", b"\x00\x05\x16\x07appledouble")
        add("sub/.DS_Store", b"ds")
        add("link.mp4", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add("hard.mp4", type=tarfile.LNKTYPE, linkname="good_a.mp4")
        add("../escape.mp4", b"E" * 10)
        add("/abs.mp4", b"F" * 10)
        add("sub/../../up.mp4", b"G" * 10)
        add("dev.mp4", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("fifo.mp4", type=tarfile.FIFOTYPE)
        add("notes.txt", b"hello")
        add("sub/good_b.MKV", b"B" * 50)


def test_junk_and_unsafe_members_are_listed_and_never_yielded(tmp_path):
    path = tmp_path / "hostile.tar.gz"
    _hostile_archive(path)
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    index = verify_archive(path, label="hostile")
    assert index.video_members == ["good_a.mp4", "sub/good_b.MKV"]
    assert index.junk == ["._good_a.mp4", "__MACOSX/._good_a.mp4", "sub/.DS_Store"]
    assert index.unsafe == [
        "link.mp4",
        "hard.mp4",
        "../escape.mp4",
        "/abs.mp4",
        "sub/../../up.mp4",
        "dev.mp4",
        "fifo.mp4",
    ]
    assert len(index.members) == 13
    yielded = dict(iter_video_members(path, label="hostile"))
    assert yielded == {"good_a.mp4": b"A" * 100, "sub/good_b.MKV": b"B" * 50}
    # Nothing was extracted or written next to the archive.
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hostile.tar.gz"]


def test_oversized_members_are_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "big.tar.gz"
    path.write_bytes(gzip.compress(_tar_bytes([("small.mp4", b"s" * 100), ("huge.mp4", b"h" * 10_000)])))
    with caplog.at_level(logging.WARNING, logger="kinetics_assets.ingest.archive"):
        yielded = [n for n, _ in iter_video_members(path, label="part_9", max_member_bytes=1000)]
    assert yielded == ["small.mp4"]
    assert "huge.mp4" in caplog.text
    assert "part_9" in caplog.text


def test_streaming_memory_stays_near_one_member(tmp_path):
    member_bytes = 1 << 20
    n_members = 24
    rng = random.Random(0)
    path = tmp_path / "many.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for i in range(n_members):
            data = rng.randbytes(member_bytes)
            info = tarfile.TarInfo(f"{i:03d}.mp4")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tracemalloc.start()
    try:
        count = 0
        for _name, data in iter_video_members(path):
            assert len(data) == member_bytes
            count += 1
            del data
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n_members
    # The archive holds 24 MiB of members; a streaming reader holds about one member plus buffers.
    assert peak < 8 * member_bytes, f"peak {peak / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------- directories


def test_directory_mode(tmp_path):
    folder = tmp_path / "video_list"
    (folder / "nested").mkdir(parents=True)
    (folder / "b_clip.mp4").write_bytes(b"b")
    (folder / "a_clip.webm").write_bytes(b"a")
    (folder / "nested" / "c_clip.mov").write_bytes(b"c")
    (folder / "._a_clip.webm").write_bytes(b"junk")
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "manifest.txt").write_text("x\n")
    (folder / "d_clip.mp4.part").write_bytes(b"partial")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(b"secret")
    (folder / "link.mp4").symlink_to(outside)

    assert list(iter_video_members(folder)) == [
        ("a_clip.webm", b"a"),
        ("b_clip.mp4", b"b"),
        ("nested/c_clip.mov", b"c"),
    ]
    index = verify_archive(folder)
    assert index.video_members == ["a_clip.webm", "b_clip.mp4", "nested/c_clip.mov"]
    assert index.junk == [".DS_Store", "._a_clip.webm"]
    assert index.unsafe == ["link.mp4"]


# ---------------------------------------------------------------------------------------------- real clips


def test_real_clip_shard_round_trips(tmp_path):
    real_dir = os.environ.get("KINETICS_REAL_VIDEOS_DIR")
    if not real_dir:
        pytest.skip("KINETICS_REAL_VIDEOS_DIR not set: real clips unavailable")
    spec = build_shard(tmp_path, "real", layout="class_folders", real_videos_dir=Path(real_dir), with_defects=False)
    assert len(spec.good_ids) == len(spec.sources) == 10
    index = verify_archive(spec.archive_path, label="real")
    assert len(index.video_members) == 10
    assert index.unsafe == []
    by_member = {spec.member_of[v]: v for v in spec.good_ids}
    for name, data in iter_video_members(spec.archive_path, label="real"):
        assert data == (Path(real_dir) / spec.sources[by_member[name]]).read_bytes()
