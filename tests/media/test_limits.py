"""Limits and hostile input: archive entries that try to escape, archives and members too large,
and video that only reveals its size while being decoded."""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kinetics_assets.ingest.archive import ArchiveLimitExceeded, SkippedMember, iter_video_members, verify_archive
from kinetics_assets.ingest.download import DownloadConfig, DownloadError, download
from kinetics_assets.ingest.layout import part_path, sidecar_path
from kinetics_assets.ingest.shards import Shard
from kinetics_assets.limits import DEFAULT_LIMITS, Limits
from kinetics_assets.media.transcode import TranscodeConfig, TranscodeError, transcode
from kinetics_assets.steps.raw import fetch_shard
from tests.harness.exotic_clips import raw_elementary_stream
from tests.harness.http_server import FaultyFileServer
from tests.harness.shards import add_tar_entry

pytestmark = pytest.mark.timeout(120)

# Quick retries, but timeouts long enough that a loaded machine never turns a slow answer into a
# retry (these tests count requests).
FAST = DownloadConfig(connect_timeout_s=30.0, read_timeout_s=30.0, max_attempts=2, backoff_base_s=0.01,
                      backoff_max_s=0.05, chunk_bytes=64 * 1024)  # fmt: skip


# ---------------------------------------------------------------------------------------------- the Limits type


def test_limits_defaults_validation_and_frame_limits():
    assert Limits() == DEFAULT_LIMITS
    assert TranscodeConfig(**DEFAULT_LIMITS.frame_limits()) == TranscodeConfig()
    assert DownloadConfig().max_bytes == DEFAULT_LIMITS.max_archive_bytes
    assert Limits(max_frames=None).max_frames is None
    for field in ("max_archive_bytes", "max_member_bytes", "max_shard_read_bytes", "max_pixels_per_frame",
                  "max_duration_s", "max_frames"):  # fmt: skip
        with pytest.raises(ValueError, match=field):
            Limits(**{field: 0})
    with pytest.raises(ValueError, match="max_bytes"):
        DownloadConfig(max_bytes=-1)


# ---------------------------------------------------------------------------------------------- hostile entries


def _hostile_archive(path: Path, tag: str) -> dict[str, str]:
    """Entries that would write or read outside a folder if extracted; name -> expected reason."""
    expected = {
        f"../{tag}_escape.mp4": "parent directory reference",
        f"/tmp/{tag}_abs.mp4": "absolute path",
        f"sub/../../{tag}_up.mp4": "parent directory reference",
        "link.mp4": "symbolic link",
        "hard.mp4": "hard link",
        "dev.mp4": "device or fifo",
        "block.mp4": "device or fifo",
        "fifo.mp4": "device or fifo",
    }
    with tarfile.open(path, "w:gz") as tar:
        add = functools.partial(add_tar_entry, tar)

        add("good.mp4", b"G" * 64)
        add(f"../{tag}_escape.mp4", b"E" * 10)
        add(f"/tmp/{tag}_abs.mp4", b"A" * 10)
        add(f"sub/../../{tag}_up.mp4", b"U" * 10)
        add("link.mp4", type=tarfile.SYMTYPE, linkname=f"/tmp/{tag}_target")
        add("hard.mp4", type=tarfile.LNKTYPE, linkname="good.mp4")
        add("dev.mp4", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("block.mp4", type=tarfile.BLKTYPE, devmajor=7, devminor=0)
        add("fifo.mp4", type=tarfile.FIFOTYPE)
        add("._good.mp4", b"\x00\x05\x16\x07")
        add("readme.txt", b"hi")
    return expected


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_unsafe_members_are_never_written_and_are_reported_with_reasons(tmp_path):
    tag = f"kinetics_{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "hostile.tar.gz"
    expected = _hostile_archive(archive, tag)
    before = _tree(tmp_path)

    skipped: list[SkippedMember] = []
    yielded = dict(iter_video_members(archive, label="part_x", on_skip=skipped.append))
    assert yielded == {"good.mp4": b"G" * 64}
    unsafe = {s.name: s.reason for s in skipped if s.kind == "unsafe"}
    assert unsafe == expected
    assert [s.name for s in skipped if s.kind == "junk"] == ["._good.mp4"]
    assert [(s.name, s.kind) for s in skipped if s.kind == "not_video"] == [("readme.txt", "not_video")]
    assert sorted(verify_archive(archive, label="part_x").unsafe) == sorted(expected)

    # Nothing was created: not beside the archive, not above it, not at the absolute or link targets.
    assert _tree(tmp_path) == before
    for name in (f"{tag}_escape.mp4", f"{tag}_up.mp4"):
        assert not (tmp_path / name).exists()
        assert not (work.parent.parent / name).exists()
    assert not Path(f"/tmp/{tag}_abs.mp4").exists()
    assert not Path(f"/tmp/{tag}_target").exists()


def test_a_symlink_in_a_video_folder_is_not_followed(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(b"a")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"secret")
    (folder / "b.mp4").symlink_to(secret)
    skipped: list[SkippedMember] = []
    assert list(iter_video_members(folder, on_skip=skipped.append)) == [("a.mp4", b"a")]
    assert [(s.name, s.kind, s.reason) for s in skipped] == [("b.mp4", "unsafe", "symbolic link")]


# ---------------------------------------------------------------------------------------------- member and total size


def _tar_gz(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_member_over_the_limit_is_reported_and_the_rest_goes_on(tmp_path):
    path = _tar_gz(tmp_path / "p.tar.gz", [("a.mp4", b"a" * 100), ("huge.mp4", b"h" * 5000), ("b.mp4", b"b" * 100)])
    skipped: list[SkippedMember] = []
    names = [n for n, _ in iter_video_members(path, label="part_3", max_member_bytes=1000, on_skip=skipped.append)]
    assert names == ["a.mp4", "b.mp4"]
    assert [(s.name, s.kind, s.size) for s in skipped] == [("huge.mp4", "too_large", 5000)]
    assert "huge.mp4" in skipped[0].reason
    assert "max_member_bytes=1000" in skipped[0].reason


def test_gzip_bomb_stops_at_the_shard_read_limit(tmp_path):
    # 64 MiB of zeros compress to ~64 KiB: the limit is met long before the data is inflated.
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        for i in range(4):
            info = tarfile.TarInfo(f"z{i}.mp4")
            info.size = 16 << 20
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert bomb.stat().st_size < 1 << 20
    read: list[str] = []

    def read_all() -> None:
        for name, _ in iter_video_members(bomb, label="part_bomb", max_total_bytes=40 << 20):
            read.append(name)

    with pytest.raises(ArchiveLimitExceeded) as caught:
        read_all()
    message = str(caught.value)
    assert "part_bomb" in message
    assert "max_shard_read_bytes=41943040" in message
    assert "z2.mp4" in message
    assert read == ["z0.mp4", "z1.mp4"]  # stopped before the member that crosses the line was read
    with pytest.raises(ArchiveLimitExceeded, match="max_shard_read_bytes"):
        verify_archive(bomb, label="part_bomb", max_total_bytes=40 << 20)
    assert len(verify_archive(bomb, label="part_bomb").video_members) == 4  # default limit: fine


def test_raw_archives_verification_is_held_to_the_shard_read_limit(tmp_path):
    # The same bomb served over HTTP: the download is verified under the limit and thrown away.
    root = tmp_path / "served"
    root.mkdir()
    with tarfile.open(root / "part_bomb.tar.gz", "w:gz") as tar:
        for i in range(4):
            info = tarfile.TarInfo(f"z{i}.mp4")
            info.size = 16 << 20
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    with FaultyFileServer(root) as server:
        url = server.url("part_bomb.tar.gz")
        shard = Shard("part_bomb", "archive", (url,), "k400", "val")
        with pytest.raises(DownloadError) as caught:
            fetch_shard(shard, str(tmp_path / "data"), FAST, max_read_bytes=40 << 20)
        message = str(caught.value)
        assert "part_bomb" in message
        assert url in message
        assert "max_shard_read_bytes=41943040" in message
        dest = tmp_path / "data" / "raw" / "part_bomb.tar.gz"
        assert not dest.exists()
        assert not part_path(dest).exists()
        assert not sidecar_path(dest).exists()
        assert len(fetch_shard(shard, str(tmp_path / "data"), FAST).index.video_members) == 4  # default limit


def test_shard_read_limit_applies_to_video_folders(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (folder / name).write_bytes(b"x" * 1000)
    with pytest.raises(ArchiveLimitExceeded, match=r"c\.mp4"):
        list(iter_video_members(folder, label="list_1", max_total_bytes=2500))


# ---------------------------------------------------------------------------------------------- archive size on download


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "part_0.tar.gz").write_bytes(gzip.compress(b"x" * 10) + bytes(300_000))
    with FaultyFileServer(root) as server:
        yield server, root


def test_announced_size_over_the_limit_is_refused(served, tmp_path):
    server, _ = served
    dest = tmp_path / "out" / "part_0.tar.gz"
    url = server.url("part_0.tar.gz")
    with pytest.raises(DownloadError) as caught:
        download(url, dest, config=DownloadConfig(**{**FAST.__dict__, "max_bytes": 100_000}), label="part_0")
    message = str(caught.value)
    assert "part_0" in message
    assert url in message
    assert "max_bytes=100000" in message
    assert len(server.requests_for("part_0.tar.gz")) == 1  # final: not retried
    assert not dest.exists()
    assert not part_path(dest).exists()
    assert not sidecar_path(dest).exists()


class _EndlessBody(BaseHTTPRequestHandler):
    """Answers with no Content-Length and a body that only ends when the client hangs up."""

    protocol_version = "HTTP/1.0"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.end_headers()
        chunk = bytes(64 * 1024)
        try:
            for _ in range(1000):  # 64 MiB at most
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def test_body_growing_past_the_limit_is_cut_off(tmp_path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EndlessBody)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/part_7.tar.gz"
        dest = tmp_path / "part_7.tar.gz"
        with pytest.raises(DownloadError, match=r"grows past max_bytes=1000000") as caught:
            download(url, dest, config=DownloadConfig(**{**FAST.__dict__, "max_bytes": 1_000_000}), label="part_7")
        assert "part_7" in str(caught.value)
        assert url in str(caught.value)
        assert not dest.exists()
        assert not part_path(dest).exists()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_local_and_already_verified_files_are_held_to_the_limit(served, tmp_path):
    server, root = served
    source = root / "part_0.tar.gz"
    small = DownloadConfig(**{**FAST.__dict__, "max_bytes": 1000})
    with pytest.raises(DownloadError, match=r"local source holds .* over max_bytes=1000"):
        download(str(source), tmp_path / "local.tar.gz", config=small, label="part_0")
    assert not (tmp_path / "local.tar.gz").exists()
    # A copy verified under a larger limit is refused once the limit is lowered.
    dest = tmp_path / "out" / "part_0.tar.gz"
    download(server.url("part_0.tar.gz"), dest, config=FAST, label="part_0")
    with pytest.raises(DownloadError, match=r"verified copy .* over max_bytes=1000"):
        download(server.url("part_0.tar.gz"), dest, config=small, label="part_0")


# ---------------------------------------------------------------------------------------------- decompression bombs in video


def test_a_stream_that_switches_to_huge_frames_is_stopped_while_decoding():
    # The headers (the first SPS) say 64x64; the second half of the stream is 1024x1024.
    small = raw_elementary_stream("libx264", width=64, height=64, frames=5)
    large = raw_elementary_stream("libx264", width=1024, height=1024, frames=5)
    config = TranscodeConfig(max_pixels_per_frame=128 * 128)
    with pytest.raises(TranscodeError) as caught:
        transcode(small + large, config, name="part_1/bomb.h264")
    assert caught.value.kind == "limit_exceeded"
    assert "1024x1024" in str(caught.value)
    assert "max_pixels_per_frame=16384" in str(caught.value)
    # The small part alone is fine, and so is the whole stream under the default limit.
    assert transcode(small, config).frames == 5
    assert transcode(small + large).frames == 10


def test_declared_huge_frames_are_refused_before_decoding():
    data = raw_elementary_stream("libx264", width=2048, height=2048, frames=2)
    with pytest.raises(TranscodeError) as caught:
        transcode(data, TranscodeConfig(max_pixels_per_frame=1920 * 1080), name="part_1/big.h264")
    assert caught.value.kind == "limit_exceeded"
    assert "2048x2048" in str(caught.value)
