"""kinetics_assets.ingest.download against a real loopback HTTP server with injected faults."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
from pathlib import Path

import pytest

from kinetics_assets.ingest.archive import verify_archive
from kinetics_assets.ingest.download import (
    DownloadConfig,
    DownloadError,
    FailedDownload,
    VerifiedFile,
    download,
    download_async,
    make_session,
    read_failed_downloads,
    read_verified,
    write_failed_downloads,
)
from kinetics_assets.ingest.download.fetch import _parse_retry_after
from kinetics_assets.ingest.layout import part_meta_path, part_path, sidecar_path
from tests.harness.http_server import Fault, FaultyFileServer
from tests.harness.shards import build_shard, build_video_list

pytestmark = pytest.mark.timeout(60)

SIZE = 3_000_000
# Small backoff keeps fault tests fast; chunks small enough to give many writes. The read timeout
# is short enough to catch the 10 s stall quickly, long enough that a busy machine's scheduling
# pauses are not taken for stalls (tests count attempts exactly).
FAST = DownloadConfig(
    connect_timeout_s=2.0,
    read_timeout_s=2.0,
    max_attempts=4,
    backoff_base_s=0.01,
    backoff_max_s=0.2,
    chunk_bytes=64 * 1024,
)


def _payload(seed: int = 1, size: int = SIZE) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    served = tmp_path / "served"
    served.mkdir()
    (served / "blob.bin").write_bytes(_payload())
    return served


@pytest.fixture
def server(root: Path):
    with FaultyFileServer(root) as srv:
        yield srv


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "out" / "blob.bin"


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir()) if dest.parent.exists() else []


def _assert_complete(result, dest: Path, expected: bytes) -> None:
    assert dest.read_bytes() == expected
    assert result.sha256 == hashlib.sha256(expected).hexdigest()
    assert result.bytes == len(expected)
    sidecar = json.loads(sidecar_path(dest).read_text())
    assert sidecar["sha256"] == result.sha256
    assert sidecar["bytes"] == len(expected)
    assert not part_path(dest).exists()
    assert not part_meta_path(dest).exists()


# ---------------------------------------------------------------------------------------------- basics


def test_plain_download_writes_file_then_sidecar(server, dest):
    seen: list[tuple[int, int | None]] = []
    result = download(
        server.url("blob.bin"), dest, config=FAST, label="part_0", progress=lambda d, t: seen.append((d, t))
    )
    _assert_complete(result, dest, _payload())
    assert (result.attempts, result.resumed_bytes, result.skipped) == (1, 0, False)
    sidecar = json.loads(sidecar_path(dest).read_text())
    assert sidecar["url"] == server.url("blob.bin")
    assert sidecar["etag"] == server.etag_of("blob.bin")
    assert sidecar["last_modified"]
    assert set(sidecar) == {"url", "bytes", "sha256", "etag", "last_modified", "verified_at"}
    assert read_verified(dest) == VerifiedFile.from_json(sidecar)
    assert read_verified(dest).sha256 == result.sha256
    assert _leftovers(dest) == ["blob.bin", "blob.bin.verified.json"]
    assert seen[-1] == (SIZE, SIZE)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_rerun_with_verified_copy_is_skipped_without_network(server, dest):
    first = download(server.url("blob.bin"), dest, config=FAST)
    requests_before = len(server.requests)
    again = download(server.url("blob.bin"), dest, config=FAST)
    assert again.skipped
    assert again.attempts == 0
    assert again.sha256 == first.sha256
    assert again.bytes == SIZE
    assert len(server.requests) == requests_before


def test_sidecar_with_wrong_size_means_download_again(server, dest):
    download(server.url("blob.bin"), dest, config=FAST)
    with dest.open("ab") as fh:
        fh.write(b"x")
    result = download(server.url("blob.bin"), dest, config=FAST)
    assert not result.skipped
    _assert_complete(result, dest, _payload())


def test_unverified_leftover_dest_is_replaced(server, dest):
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"stale partial copy without a sidecar")
    result = download(server.url("blob.bin"), dest, config=FAST)
    assert not result.skipped
    _assert_complete(result, dest, _payload())


# ---------------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        (Fault.RESET, {"after_bytes": 1_000_000}),
        (Fault.STALL, {"after_bytes": 1_200_000, "stall_s": 10}),
        (Fault.SHORT_BODY, {"after_bytes": 700_000}),
    ],
)
def test_interrupted_transfer_resumes_without_refetching(server, dest, fault, params):
    server.add_fault("blob.bin", fault, **params)
    result = download(server.url("blob.bin"), dest, config=FAST, label="part_1")
    _assert_complete(result, dest, _payload())
    first, second = server.requests_for("blob.bin")
    assert first.fault == fault.value
    assert first.range is None
    assert 0 < result.resumed_bytes <= params["after_bytes"]
    assert second.range == f"bytes={result.resumed_bytes}-"
    assert second.if_range == server.etag_of("blob.bin")
    assert second.status == 206
    assert second.range_start == result.resumed_bytes
    # The resumed bytes were not fetched again: the second answer carried only the rest.
    assert second.bytes_sent == SIZE - result.resumed_bytes
    assert result.attempts == 2


def test_several_faults_in_a_row_are_all_survived(server, dest):
    server.add_fault("blob.bin", Fault.RESET, after_bytes=500_000)
    server.add_fault("blob.bin", Fault.ERROR_500)
    server.add_fault("blob.bin", Fault.SHORT_BODY, after_bytes=400_000)
    result = download(server.url("blob.bin"), dest, config=FAST)
    _assert_complete(result, dest, _payload())
    statuses = [(r.status, r.range) for r in server.requests_for("blob.bin")]
    assert statuses[0] == (200, None)
    assert statuses[1][0] == 500
    assert statuses[2][0] == 206
    assert statuses[3][0] == 206
    assert result.attempts == 4
    total_sent = sum(r.bytes_sent for r in server.requests_for("blob.bin"))
    assert total_sent <= SIZE + 64 * 1024  # at most what a reset lost in flight is sent twice


def test_resume_across_calls_uses_the_kept_part(server, dest):
    one_try = DownloadConfig(**{**FAST.__dict__, "max_attempts": 1})
    server.add_fault("blob.bin", Fault.RESET, after_bytes=1_500_000)
    with pytest.raises(DownloadError) as info:
        download(server.url("blob.bin"), dest, config=one_try, label="part_2")
    assert "part_2" in str(info.value)
    assert server.url("blob.bin") in str(info.value)
    kept = part_path(dest).stat().st_size
    assert kept > 0
    assert json.loads(part_meta_path(dest).read_text())["etag"] == server.etag_of("blob.bin")
    assert not dest.exists()
    assert not sidecar_path(dest).exists()

    result = download(server.url("blob.bin"), dest, config=FAST)
    _assert_complete(result, dest, _payload())
    last = server.requests_for("blob.bin")[-1]
    assert last.range == f"bytes={kept}-"
    assert last.status == 206
    assert result.resumed_bytes == kept
    assert last.bytes_sent == SIZE - kept


def test_part_from_another_url_is_not_reused(server, root, dest):
    (root / "other.bin").write_bytes(_payload(seed=2))
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(_payload(seed=2)[:1000])
    part_meta_path(dest).write_text(json.dumps({"url": server.url("other.bin"), "etag": '"x"', "total": SIZE}))
    result = download(server.url("blob.bin"), dest, config=FAST)
    _assert_complete(result, dest, _payload())
    assert server.requests_for("blob.bin")[0].range is None
    assert result.resumed_bytes == 0


def test_complete_part_is_finished_with_a_416_answer(server, dest):
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(_payload())
    meta = {"url": server.url("blob.bin"), "etag": server.etag_of("blob.bin"), "total": SIZE}
    part_meta_path(dest).write_text(json.dumps(meta))
    result = download(server.url("blob.bin"), dest, config=FAST)
    _assert_complete(result, dest, _payload())
    (only,) = server.requests_for("blob.bin")
    assert only.status == 416
    assert result.resumed_bytes == SIZE


def test_a_restart_from_byte_0_is_retried_at_once(server, dest):
    # A .part longer than the file: the server rejects its range, the .part is reset, and the next
    # attempt goes out without the backoff (which would be up to 30 s here).
    slow = DownloadConfig(**{**FAST.__dict__, "backoff_base_s": 30.0, "backoff_max_s": 30.0})
    dest.parent.mkdir(parents=True)
    part_path(dest).write_bytes(_payload() + b"more")
    part_meta_path(dest).write_text(json.dumps({"url": server.url("blob.bin"), "etag": server.etag_of("blob.bin")}))
    result = download(server.url("blob.bin"), dest, config=slow)
    _assert_complete(result, dest, _payload())
    first, second = server.requests_for("blob.bin")
    assert first.status == 416
    assert second.range is None
    assert second.status == 200
    assert second.received_at - first.received_at < 5.0
    assert (result.attempts, result.resumed_bytes) == (2, 0)


def test_server_ignoring_range_means_clean_restart(server, dest):
    server.add_fault("blob.bin", Fault.RESET, after_bytes=1_000_000)
    server.add_fault("blob.bin", Fault.IGNORE_RANGE)
    result = download(server.url("blob.bin"), dest, config=FAST)
    _assert_complete(result, dest, _payload())
    second = server.requests_for("blob.bin")[1]
    assert second.range is not None
    assert second.status == 200
    assert second.bytes_sent == SIZE
    assert result.resumed_bytes == 0


def test_changed_file_is_fetched_whole_never_spliced(server, dest):
    old_etag = server.etag_of("blob.bin")
    new_content = _payload(seed=9, size=2_000_000)
    server.add_fault("blob.bin", Fault.CHANGE_ETAG, after_bytes=1_000_000, new_content=new_content)
    result = download(server.url("blob.bin"), dest, config=FAST)
    _assert_complete(result, dest, new_content)
    second = server.requests_for("blob.bin")[1]
    assert second.if_range == old_etag
    assert second.status == 200
    assert result.resumed_bytes == 0
    assert json.loads(sidecar_path(dest).read_text())["etag"] == server.etag_of("blob.bin") != old_etag


def test_last_modified_is_the_validator_without_etag(root, dest):
    with FaultyFileServer(root, etag=False) as server:
        server.add_fault("blob.bin", Fault.RESET, after_bytes=1_000_000)
        result = download(server.url("blob.bin"), dest, config=FAST)
        second = server.requests_for("blob.bin")[1]
    _assert_complete(result, dest, _payload())
    assert second.if_range is not None
    assert second.if_range.endswith("GMT")
    assert second.status == 206
    assert result.resumed_bytes > 0


def test_without_validators_a_retry_restarts_from_zero(root, dest):
    with FaultyFileServer(root, etag=False, last_modified=False) as server:
        server.add_fault("blob.bin", Fault.RESET, after_bytes=1_000_000)
        result = download(server.url("blob.bin"), dest, config=FAST)
        second = server.requests_for("blob.bin")[1]
    _assert_complete(result, dest, _payload())
    assert second.range is None
    assert second.status == 200
    assert result.resumed_bytes == 0


# ---------------------------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("fault", "params"), [(Fault.ERROR_500, {}), (Fault.STATUS, {"status": 503}), (Fault.STATUS, {"status": 408})]
)
def test_transient_statuses_are_retried(server, dest, fault, params):
    server.add_fault("blob.bin", fault, times=2, **params)
    result = download(server.url("blob.bin"), dest, config=FAST)
    _assert_complete(result, dest, _payload())
    assert result.attempts == 3
    assert [r.status for r in server.requests_for("blob.bin")][-1] == 200


def test_429_retry_after_is_honoured(server, dest):
    # Retry-After 1 s is far above the test backoff (<= 0.2 s), so the gap shows it was obeyed.
    config = DownloadConfig(**{**FAST.__dict__, "backoff_max_s": 5.0})
    server.add_fault("blob.bin", Fault.RETRY_429, retry_after=1)
    result = download(server.url("blob.bin"), dest, config=config)
    _assert_complete(result, dest, _payload())
    first, second = server.requests_for("blob.bin")
    assert first.status == 429
    assert second.status == 200
    assert second.received_at - first.received_at >= 0.9


def test_retry_after_is_capped_by_backoff_max(server, dest):
    server.add_fault("blob.bin", Fault.STATUS, status=503, retry_after=3600)
    result = download(server.url("blob.bin"), dest, config=FAST)
    _assert_complete(result, dest, _payload())
    assert result.attempts == 2


def test_retry_after_parsing():
    assert _parse_retry_after("7") == 7.0
    assert _parse_retry_after(None) is None
    assert _parse_retry_after("soon") is None
    import time
    from email.utils import formatdate

    ahead = _parse_retry_after(formatdate(time.time() + 30, usegmt=True))
    assert 25 <= ahead <= 31
    assert _parse_retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0


def test_persistent_5xx_gives_up_with_a_clear_error(server, dest):
    server.add_fault("blob.bin", Fault.ERROR_500, times=10)
    with pytest.raises(DownloadError) as info:
        download(server.url("blob.bin"), dest, config=FAST, label="part_7")
    message = str(info.value)
    assert "part_7" in message
    assert server.url("blob.bin") in message
    assert "gave up after 4 attempt(s)" in message
    assert "HTTP 500" in message
    assert len(server.requests_for("blob.bin")) == FAST.max_attempts
    assert _leftovers(dest) == []


# ---------------------------------------------------------------------------------------------- final errors


def test_404_fails_at_once(server, dest):
    url = server.url("missing.tar.gz")
    with pytest.raises(DownloadError) as info:
        download(url, dest, config=FAST, label="part_9")
    assert "404" in str(info.value)
    assert url in str(info.value)
    assert "part_9" in str(info.value)
    assert info.value.status == 404
    assert len(server.requests_for("missing.tar.gz")) == 1
    assert _leftovers(dest) == []


def test_403_is_final(server, dest):
    server.add_fault("blob.bin", Fault.STATUS, status=403)
    with pytest.raises(DownloadError, match="HTTP 403"):
        download(server.url("blob.bin"), dest, config=FAST)
    assert len(server.requests_for("blob.bin")) == 1


def test_html_page_with_200_is_rejected(server, dest):
    server.add_fault("blob.bin", Fault.HTML_200)
    with pytest.raises(DownloadError) as info:
        download(server.url("blob.bin"), dest, config=FAST, label="part_3")
    assert "HTML" in str(info.value)
    assert server.url("blob.bin") in str(info.value)
    assert len(server.requests_for("blob.bin")) == 1
    assert _leftovers(dest) == []


def test_unreachable_host_gives_a_clear_error(dest):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/part_0.tar.gz"
    with pytest.raises(DownloadError) as info:
        download(url, dest, config=FAST, label="part_0")
    message = str(info.value)
    assert url in message
    assert "part_0" in message
    assert "connect" in message.lower()
    assert _leftovers(dest) == []


def test_unsupported_scheme_is_rejected(dest):
    with pytest.raises(DownloadError, match="unsupported url scheme"):
        download("ftp://127.0.0.1/x.tar.gz", dest, config=FAST)


# ---------------------------------------------------------------------------------------------- verify


def test_archive_is_verified_before_it_is_kept(tmp_path, dest):
    spec = build_shard(tmp_path / "served", "part_0", n_clips=2)
    with FaultyFileServer(tmp_path / "served") as server:
        server.add_fault("part_0.tar.gz", Fault.RESET)
        result = download(server.url("part_0.tar.gz"), dest, config=FAST, verify=verify_archive, label="part_0")
    _assert_complete(result, dest, spec.archive_path.read_bytes())
    assert verify_archive(dest).video_members == spec.video_members


def test_corrupt_archive_leaves_nothing_that_looks_verified(tmp_path, dest):
    spec = build_shard(tmp_path / "src", "part_1", n_clips=2)
    served = tmp_path / "served"
    served.mkdir()
    data = spec.archive_path.read_bytes()
    (served / "part_1.tar.gz").write_bytes(data[: len(data) - 100])  # lost its tail and CRC
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"an old unverified copy")
    with FaultyFileServer(served) as server, pytest.raises(DownloadError) as info:
        download(server.url("part_1.tar.gz"), dest, config=FAST, verify=verify_archive, label="part_1")
    assert "verification failed" in str(info.value)
    assert "part_1" in str(info.value)
    assert _leftovers(dest) == []


def test_html_saved_under_an_archive_name_fails_verification(tmp_path, dest):
    # A server that labels its login page as binary slips past the Content-Type check; verify catches it.
    served = tmp_path / "served"
    served.mkdir()
    (served / "part_2.tar.gz").write_bytes(b"<!DOCTYPE html><html><body>Sign in</body></html>")
    with FaultyFileServer(served) as server, pytest.raises(DownloadError, match="HTML"):
        download(server.url("part_2.tar.gz"), dest, config=FAST, verify=verify_archive)
    assert _leftovers(dest) == []


# ---------------------------------------------------------------------------------------------- local inputs


@pytest.mark.parametrize("as_url", [False, True])
def test_local_path_and_file_url(root, dest, as_url):
    source = root / "blob.bin"
    url = source.resolve().as_uri() if as_url else str(source)
    result = download(url, dest, config=FAST, label="local")
    _assert_complete(result, dest, _payload())
    assert result.url == url
    assert not result.skipped
    assert download(url, dest, config=FAST).skipped


def test_missing_local_file_and_failed_local_verify(tmp_path, dest):
    with pytest.raises(DownloadError, match="cannot read local source"):
        download(str(tmp_path / "nope.tar.gz"), dest, config=FAST, label="part_5")
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"not an archive")
    with pytest.raises(DownloadError, match="verification failed"):
        download(bogus.as_uri(), dest, config=FAST, verify=verify_archive)
    assert _leftovers(dest) == []


# ---------------------------------------------------------------------------------------------- async use


def test_one_session_for_a_video_list(tmp_path):
    spec = build_video_list(tmp_path / "served", "vl", n_clips=3)
    out = tmp_path / "vl_out"
    with FaultyFileServer(tmp_path / "served") as server:
        rel = [p.relative_to(tmp_path / "served").as_posix() for p in spec.clip_paths]
        server.add_fault(rel[1], Fault.RESET)

        async def fetch_all():
            async with make_session(FAST) as session:
                return await asyncio.gather(
                    *(download_async(session, server.url(r), out / Path(r).name, config=FAST, label="vl") for r in rel)
                )

        results = asyncio.run(fetch_all())
    for result, source in zip(results, spec.clip_paths, strict=True):
        assert result.path.read_bytes() == source.read_bytes()
    assert results[1].attempts == 2
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(p.name for p in spec.clip_paths)


def test_sync_download_works_inside_a_running_loop(server, dest):
    async def inside():
        return download(server.url("blob.bin"), dest, config=FAST)

    result = asyncio.run(inside())
    _assert_complete(result, dest, _payload())


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="max_attempts"):
        DownloadConfig(max_attempts=0)
    with pytest.raises(ValueError, match="read_timeout_s"):
        DownloadConfig(read_timeout_s=0)


def test_failed_download_record_round_trips_as_a_json_list(tmp_path):
    record = tmp_path / "failed_downloads.json"
    assert read_failed_downloads(record) == []
    failed = [FailedDownload(name="a.mp4", url="http://h/a.mp4", error="DownloadError: HTTP 404")]
    write_failed_downloads(record, failed)
    assert json.loads(record.read_text()) == [
        {"name": "a.mp4", "url": "http://h/a.mp4", "error": "DownloadError: HTTP 404"}
    ]
    assert read_failed_downloads(record) == failed


def test_only_a_sidecar_naming_size_and_sha256_counts_as_verified(tmp_path):
    assert VerifiedFile.from_json({"bytes": 3, "sha256": "ab"}) == VerifiedFile(url="", bytes=3, sha256="ab")
    for payload in (None, [], {"bytes": 3}, {"sha256": "ab"}, {"bytes": "3", "sha256": "ab"}):
        assert VerifiedFile.from_json(payload) is None
    assert read_verified(tmp_path / "nothing.bin") is None
