"""Resumable, verified downloads of shard archives and videos.

A shard is only useful when complete and intact, and shards are large (Kinetics-400 val parts are
~1.5 GB), so a download streams to `<dest>.part`, resumes interrupted transfers with validated
Range requests, verifies the finished file, and only then moves it into place and writes a
`<dest>.verified.json` sidecar. The sidecar is written last: its presence is the single signal that
`dest` is complete and verified, which makes re-runs free. One download per `dest` at a time: two
concurrent calls for the same destination would share one .part file.

No dagster or ray imports: this module is used by assets, command line tools and tests alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import hashlib
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from kinetics_assets.ingest.layout import part_meta_path, part_path, sidecar_path
from kinetics_assets.limits import DEFAULT_LIMITS

if TYPE_CHECKING:
    # Imported where a download first needs it: the code location names DownloadConfig alone.
    import aiohttp

__all__ = [
    "DownloadConfig",
    "DownloadError",
    "DownloadResult",
    "FailedDownload",
    "VerifiedFile",
    "download",
    "download_async",
    "make_session",
    "read_failed_downloads",
    "read_verified",
    "write_failed_downloads",
]

MIB = 1 << 20
# Suffixes for which an HTML answer is legitimate; any other request expects binary data.
_HTML_SUFFIXES = (".html", ".htm")
# Chunks queued for the writer thread at most; bounds memory to ~(1 + this) chunks.
_MAX_PENDING_WRITES = 4
_MIN_CHUNK_BYTES = 4096
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")

Progress = Callable[[int, int | None], None]
Verify = Callable[[Path], None]


@dataclass(frozen=True)
class DownloadConfig:
    """Transfer settings. There is deliberately no total timeout: multi-GB shards on slow links
    legitimately take long; a stalled transfer is caught by the per-read timeout instead.
    """

    connect_timeout_s: float = 30.0
    read_timeout_s: float = 60.0  # longest wait for any single read of the body or headers
    max_attempts: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    # Unit of disk writes and hashing. 512 KiB fits in a core's L2 cache, so hashing a chunk right
    # after writing it reads it from the cache (BENCHMARKS.md: 1 MiB and 4 MiB were slower).
    chunk_bytes: int = 512 * 1024
    # Largest file accepted (None: no limit): an announced Content-Length, a body that keeps
    # growing, a local source and an already verified copy are all held to it.
    max_bytes: int | None = DEFAULT_LIMITS.max_archive_bytes

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"DownloadConfig.max_attempts must be >= 1, got {self.max_attempts}")
        if self.chunk_bytes < _MIN_CHUNK_BYTES:
            raise ValueError(f"DownloadConfig.chunk_bytes must be >= {_MIN_CHUNK_BYTES}, got {self.chunk_bytes}")
        for name in ("connect_timeout_s", "read_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DownloadConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("DownloadConfig backoff settings must be >= 0")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError(f"DownloadConfig.max_bytes must be > 0 or None, got {self.max_bytes}")


@dataclass(frozen=True, kw_only=True)
class VerifiedFile:
    """What a download's `.verified.json` sidecar records about the file beside it."""

    url: str
    bytes: int
    sha256: str
    etag: str | None = None
    last_modified: str | None = None
    verified_at: str = ""

    @classmethod
    def from_json(cls, payload: object) -> VerifiedFile | None:
        """The sidecar in a parsed JSON payload; None unless it names at least a size and a sha256."""
        if not isinstance(payload, dict) or not isinstance(payload.get("bytes"), int) or not payload.get("sha256"):
            return None
        return cls(
            url=payload.get("url") or "", bytes=payload["bytes"], sha256=payload["sha256"], etag=payload.get("etag"),
            last_modified=payload.get("last_modified"), verified_at=payload.get("verified_at") or "",
        )  # fmt: skip


def read_verified(dest: Path) -> VerifiedFile | None:
    """The sidecar of a local download of `dest`; None when there is none (or it is unreadable)."""
    try:
        return VerifiedFile.from_json(json.loads(sidecar_path(dest).read_text()))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class DownloadResult:
    url: str
    path: Path
    bytes: int  # size of the final file
    sha256: str
    seconds: float  # wall time of this call
    mb_per_s: float  # bytes actually transferred by this call / seconds, in 10^6 bytes per second
    attempts: int  # requests made (0 when skipped)
    resumed_bytes: int  # bytes of the final file that were kept from an earlier attempt, not fetched again
    skipped: bool  # True when a verified copy was already present

    @classmethod
    def already_verified(cls, verified: VerifiedFile, *, url: str, path: Path) -> DownloadResult:
        """The result of a download that was not needed: a verified copy was already there."""
        return cls(
            url=url, path=path, bytes=verified.bytes, sha256=verified.sha256, seconds=0.0, mb_per_s=0.0,
            attempts=0, resumed_bytes=0, skipped=True,
        )  # fmt: skip


class DownloadError(Exception):
    """A download that could not be completed or verified; names the shard, the url and the cause."""

    def __init__(self, label: str, url: str, cause: str, *, status: int | None = None) -> None:
        self.label = label
        self.url = url
        self.cause = cause
        self.status = status
        super().__init__(f"download of {label!r} from {url} failed: {cause}")


@dataclass(frozen=True)
class FailedDownload:
    """A video of a video-list shard that could not be fetched; the shard's other videos went on."""

    name: str
    """The file name it would have had in the shard's folder."""
    url: str
    error: str


def write_failed_downloads(path: Path, failed: Sequence[FailedDownload]) -> None:
    """The record of a video-list shard's failed videos (a JSON list of objects, in the shard's folder)."""
    path.write_text(json.dumps([asdict(f) for f in failed], indent=1))


def read_failed_downloads(path: Path) -> list[FailedDownload]:
    """The videos recorded at `path` as failed; none when there is no record."""
    if not path.is_file():
        return []
    return [FailedDownload(**entry) for entry in json.loads(path.read_text())]


def make_session(config: DownloadConfig = DownloadConfig(), **kwargs: Any) -> aiohttp.ClientSession:
    """A session suited to many downloads (pass it to `download_async`). Must be created inside a
    running event loop.
    """
    import aiohttp

    kwargs.setdefault("timeout", _client_timeout(config))
    kwargs.setdefault("auto_decompress", False)
    kwargs.setdefault("read_bufsize", config.chunk_bytes)
    return aiohttp.ClientSession(**kwargs)


def download(
    url: str,
    dest: Path,
    *,
    config: DownloadConfig = DownloadConfig(),
    verify: Verify | None = None,
    label: str = "",
    progress: Progress | None = None,
) -> DownloadResult:
    """Fetch `url` (http(s), file:// or a local path) to `dest`, verified; see the module docstring.

    Runs its own event loop (in a helper thread when called from inside a running loop).
    """

    async def run() -> DownloadResult:
        if _is_local(url):  # no session needed
            return await download_async(None, url, dest, config=config, verify=verify, label=label, progress=progress)
        async with make_session(config) as session:
            return await download_async(
                session, url, dest, config=config, verify=verify, label=label, progress=progress
            )

    return _run_sync(run)


async def download_async(
    session: aiohttp.ClientSession | None,
    url: str,
    dest: Path,
    *,
    config: DownloadConfig = DownloadConfig(),
    verify: Verify | None = None,
    label: str = "",
    progress: Progress | None = None,
) -> DownloadResult:
    """Like `download`, sharing `session` across many files (e.g. the videos of a video-list shard).

    `session` may be None for local paths / file:// urls. Timeouts come from `config`, not from the
    session, and responses are never decompressed (a .tar.gz must arrive byte for byte).
    """
    dest = Path(dest)
    label = label or dest.name
    started = time.monotonic()
    skipped = _verified_copy(dest, url)
    if skipped is not None:
        _check_size(skipped.bytes, config, label, url, f"the verified copy at {dest} holds")
        return skipped
    if _is_local(url):
        return await asyncio.to_thread(
            _copy_local, url, dest, verify=verify, label=label, progress=progress, config=config, started=started
        )
    scheme = urlparse(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(label, url, f"unsupported url scheme {scheme!r} (expected http, https, file)")
    if session is None:
        raise DownloadError(label, url, "an aiohttp session is required for http(s) urls")

    _remove_stale_final(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    state = await asyncio.to_thread(_PartState.load, dest, url)  # may re-hash a large .part
    fetch = _HttpFetch(session=session, url=url, state=state, config=config, label=label, progress=progress)
    await fetch.run()
    await asyncio.to_thread(_finalize, fetch.state, dest, url, verify, label)
    seconds = time.monotonic() - started
    return DownloadResult(
        url=url,
        path=dest,
        bytes=fetch.state.offset,
        sha256=fetch.state.sha256,
        seconds=seconds,
        mb_per_s=_mb_per_s(fetch.received_bytes, seconds),
        attempts=fetch.attempts,
        resumed_bytes=fetch.resumed_bytes,
        skipped=False,
    )


# --------------------------------------------------------------------------------------------------
# Partial-file state: the .part file, its running hash, and the validators that make resuming safe.


@dataclass
class _PartState:
    part: Path
    meta: Path
    url: str
    offset: int = 0
    etag: str | None = None
    last_modified: str | None = None
    total: int | None = None
    # The .part's running hash; load() and reset() set the one that matches its bytes.
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)

    @property
    def sha256(self) -> str:
        return self.hasher.hexdigest()

    def if_range(self) -> str | None:
        """The validator for If-Range. Weak ETags may not be used there (RFC 9110 13.1.5)."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    @classmethod
    def load(cls, dest: Path, url: str) -> _PartState:
        """Resume across calls only when the leftover .part came from the same url and a validator
        lets the server confirm the file did not change; otherwise start clean.
        """
        state = cls(part=part_path(dest), meta=part_meta_path(dest), url=url)
        try:
            meta = json.loads(state.meta.read_text())
            size = state.part.stat().st_size
        except (OSError, ValueError):
            meta, size = None, 0
        if not isinstance(meta, dict):
            state.reset()
            return state
        state.etag, state.last_modified, state.total = meta.get("etag"), meta.get("last_modified"), meta.get("total")
        if meta.get("url") != url or state.if_range() is None or (state.total is not None and size > state.total):
            state.reset()
            return state
        state.offset = size
        state.hasher = _hash_file(state.part)
        return state

    def reset(self) -> None:
        """Start from byte 0: never splice bytes of two different versions of the file."""
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self.part.write_bytes(b"")
        self.meta.unlink(missing_ok=True)
        self.offset = 0
        self.etag = self.last_modified = None
        self.total = None
        self.hasher = hashlib.sha256()

    def save_meta(self) -> None:
        _write_json_atomic(
            self.meta,
            {"url": self.url, "etag": self.etag, "last_modified": self.last_modified, "total": self.total},
        )

    def discard(self) -> None:
        self.part.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


class _PartWriter:
    """Writes and hashes chunks on one worker thread (file writes and hashlib both release the GIL),
    so the event loop keeps reading the socket meanwhile. Hashing each chunk right after writing it
    reads it while it is still in the CPU cache; on 2 cores this beat a separate hashing thread
    (BENCHMARKS.md). Chunk order is kept; memory is bounded by the chunks in flight.
    """

    def __init__(self, state: _PartState, worker: concurrent.futures.ThreadPoolExecutor) -> None:
        self._state = state
        self._worker = worker
        self._file = state.part.open("r+b")
        self._file.seek(state.offset)
        self._file.truncate()
        self._pending: deque[asyncio.Future] = deque()

    def _write_and_hash(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._file.write(chunk)
            self._state.hasher.update(chunk)
            self._state.offset += len(chunk)

    async def submit(self, chunks: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._worker, self._write_and_hash, chunks))
        while len(self._pending) > _MAX_PENDING_WRITES:
            await self._pending.popleft()

    async def close(self) -> None:
        """Wait for every queued chunk (even after a failure), so the .part, the offset and the hash
        agree and no write lands on a closed file.
        """
        first_error: BaseException | None = None
        while self._pending:
            try:
                await self._pending.popleft()
            except Exception as exc:  # noqa: BLE001 - raised below, once every queued write has finished
                first_error = first_error or exc
        await asyncio.to_thread(self._file.close)
        if first_error is not None:
            raise first_error


def _part_worker() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread a download call writes and hashes on (see _PartWriter)."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="download-write")


# --------------------------------------------------------------------------------------------------
# HTTP transfer with retries.


class _RetryableError(Exception):
    """An attempt that failed in a way a later attempt may not: retried under the backoff policy,
    at once when `immediate` (the .part was reset, so nothing is gained by waiting).
    """

    def __init__(self, cause: str, retry_after_s: float | None = None, *, immediate: bool = False) -> None:
        super().__init__(cause)
        self.retry_after_s = retry_after_s
        self.immediate = immediate


class _FinalError(Exception):
    def __init__(self, cause: str, status: int | None = None) -> None:
        super().__init__(cause)
        self.status = status


class _HttpFetch:
    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        state: _PartState,
        config: DownloadConfig,
        label: str,
        progress: Progress | None,
    ) -> None:
        self.session, self.url, self.state, self.config = session, url, state, config
        self.label, self.progress = label, progress
        self.attempts = 0
        self.received_bytes = 0  # over all attempts of this call
        self.resumed_bytes = 0  # offset at which the successful attempt started
        self._expects_html = urlparse(url).path.lower().endswith(_HTML_SUFFIXES)

    async def run(self) -> None:
        """At most `max_attempts` attempts; each resumes from the bytes the .part already holds."""
        worker = _part_worker()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=self._delay,
            retry=retry_if_exception_type(_RetryableError),
            reraise=True,
        )
        try:
            async for trial in retrying:
                with trial:
                    self.attempts = trial.retry_state.attempt_number
                    await self._classified_attempt(worker)
        except _RetryableError as exc:  # the last attempt's cause
            last_cause = str(exc)
        else:
            return
        finally:
            worker.shutdown(wait=True)
        if self.state.offset > 0 and self.state.if_range() is not None:
            kept = f" (kept {self.state.offset} bytes in {self.state.part.name} for a later resume)"
        else:
            self.state.discard()
            kept = ""
        raise DownloadError(
            self.label, self.url, f"gave up after {self.attempts} attempt(s); last error: {last_cause}{kept}"
        )

    async def _classified_attempt(self, worker: concurrent.futures.ThreadPoolExecutor) -> None:
        """One attempt, its failure sorted: _RetryableError for what another attempt may cure, DownloadError
        (and no further attempt) for what it cannot.
        """
        import aiohttp

        try:
            await self._attempt(worker)
        except _FinalError as exc:
            self.state.discard()
            raise DownloadError(self.label, self.url, str(exc), status=exc.status) from None
        except (aiohttp.InvalidURL, aiohttp.TooManyRedirects, aiohttp.ClientSSLError) as exc:
            self.state.discard()
            raise DownloadError(self.label, self.url, _describe(exc)) from None
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            raise _RetryableError(_describe(exc)) from exc
        except OSError as exc:  # local disk trouble (full, read-only): retrying will not help
            raise DownloadError(self.label, self.url, f"writing {self.state.part} failed: {exc}") from None

    def _delay(self, retry: RetryCallState) -> float:
        """Full-jitter exponential backoff; a server's Retry-After wins (capped at backoff_max_s)."""
        failure = retry.outcome.exception() if retry.outcome else None
        if isinstance(failure, _RetryableError) and failure.immediate:
            return 0.0
        cap = self.config.backoff_max_s
        if isinstance(failure, _RetryableError) and failure.retry_after_s is not None:
            return min(max(failure.retry_after_s, 0.0), cap)
        return wait_random_exponential(multiplier=self.config.backoff_base_s, max=cap)(retry)

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"}
        state = self.state
        if state.offset > 0:
            validator = state.if_range()
            if validator is None:
                state.reset()
            else:
                headers["Range"] = f"bytes={state.offset}-"
                headers["If-Range"] = validator
        return headers

    async def _attempt(self, worker: concurrent.futures.ThreadPoolExecutor) -> None:
        state, config = self.state, self.config
        headers = self._request_headers()
        asked_from = state.offset
        async with self.session.get(
            self.url,
            headers=headers,
            timeout=_client_timeout(config),
            auto_decompress=False,
            read_bufsize=config.chunk_bytes,
            allow_redirects=True,
        ) as resp:
            status = resp.status
            if status == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE and asked_from > 0:
                match = _UNSATISFIED_RANGE.search(resp.headers.get("Content-Range", ""))
                if match and int(match.group(1)) == asked_from:
                    state.total = asked_from  # the .part already holds the whole file
                    self.resumed_bytes = asked_from
                    return
                state.reset()
                raise _RetryableError("server rejected the resume range; restarting from byte 0", immediate=True)
            if status not in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
                self._raise_for_status(resp)
            self._reject_html(resp)
            if status == HTTPStatus.PARTIAL_CONTENT:
                start, total = self._parse_content_range(resp)
                if start != asked_from:
                    state.reset()
                    raise _RetryableError(
                        f"server answered the range from {asked_from} with one from {start}; restarting",
                        immediate=True,
                    )
            else:
                if asked_from > 0:
                    state.reset()  # Range ignored or the file changed (If-Range failed): restart cleanly
                total = resp.content_length
            if total is not None and self.config.max_bytes is not None and total > self.config.max_bytes:
                raise _FinalError(f"the server announces {total} bytes, over max_bytes={self.config.max_bytes}")
            self.resumed_bytes = state.offset
            state.etag = resp.headers.get("ETag")
            state.last_modified = resp.headers.get("Last-Modified")
            state.total = total
            state.save_meta()
            await self._stream_body(resp, worker)
        if state.total is not None and state.offset != state.total:
            raise _RetryableError(f"body ended early: got {state.offset} of {state.total} bytes")

    def _raise_for_status(self, resp: aiohttp.ClientResponse) -> None:
        status, reason = resp.status, resp.reason or ""
        if status == HTTPStatus.NOT_FOUND:
            raise _FinalError(f"HTTP 404 {reason}: no file at this url", status=status)
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR or status in (408, 429):
            retry_after = _parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
            raise _RetryableError(f"HTTP {status} {reason}", retry_after_s=retry_after)
        raise _FinalError(f"HTTP {status} {reason}", status=status)

    def _reject_html(self, resp: aiohttp.ClientResponse) -> None:
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type in ("text/html", "application/xhtml+xml") and not self._expects_html:
            raise _FinalError(
                f"server answered HTTP {resp.status} with an HTML page ({content_type}) instead of the file"
                " (a login, error or quota page?)",
                status=resp.status,
            )

    def _parse_content_range(self, resp: aiohttp.ClientResponse) -> tuple[int, int | None]:
        header = resp.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.fullmatch(header.strip())
        if not match:
            self.state.reset()
            raise _RetryableError(f"unusable Content-Range {header!r} on a 206 answer; restarting", immediate=True)
        total = match.group(3)
        return int(match.group(1)), (None if total == "*" else int(total))

    async def _stream_body(self, resp: aiohttp.ClientResponse, worker: concurrent.futures.ThreadPoolExecutor) -> None:
        writer = _PartWriter(self.state, worker)
        chunk_bytes = self.config.chunk_bytes
        batch: list[bytes] = []
        batch_size = 0
        queued = self.state.offset
        limit = self.config.max_bytes
        try:
            async for data in resp.content.iter_any():
                batch.append(data)
                batch_size += len(data)
                self.received_bytes += len(data)
                if limit is not None and queued + batch_size > limit:
                    # No or a lying Content-Length: stop at the limit, write nothing past it.
                    batch, batch_size = [], 0
                    raise _FinalError(
                        f"the body grows past max_bytes={limit} (more than the server announced)"
                        if self.state.total is not None
                        else f"the body grows past max_bytes={limit}"
                    )
                if batch_size >= chunk_bytes:
                    queued += batch_size
                    await writer.submit(batch)
                    batch, batch_size = [], 0
                    if self.progress is not None:
                        self.progress(queued, self.state.total)
        finally:
            # Keep whatever arrived, even on an error: the next attempt resumes after it.
            if batch:
                queued += batch_size
                await writer.submit(batch)
            await writer.close()
        if self.progress is not None:
            self.progress(self.state.offset, self.state.total)


# --------------------------------------------------------------------------------------------------
# Finishing, skipping and local copies.


def _finalize(state: _PartState, dest: Path, url: str, verify: Verify | None, label: str) -> None:
    """Verify the complete .part, move it into place, then write the sidecar (last)."""
    if verify is not None:
        try:
            verify(state.part)
        except Exception as exc:  # any verifier failure means the file must not be used
            state.discard()
            raise DownloadError(label, url, f"verification failed: {exc}") from exc
    with state.part.open("rb") as fh:
        os.fsync(fh.fileno())
    state.part.replace(dest)
    state.meta.unlink(missing_ok=True)
    verified = VerifiedFile(
        url=url, bytes=state.offset, sha256=state.sha256, etag=state.etag, last_modified=state.last_modified,
        verified_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip
    _write_json_atomic(sidecar_path(dest), asdict(verified))


def _verified_copy(dest: Path, url: str) -> DownloadResult | None:
    """The sidecar is trusted when it names the size of the file beside it; nothing is fetched."""
    verified = read_verified(dest)
    try:
        size = dest.stat().st_size
    except OSError:
        return None
    if verified is None or verified.bytes != size:
        return None
    return DownloadResult.already_verified(verified, url=url, path=dest)


def _remove_stale_final(dest: Path) -> None:
    """A dest without a valid sidecar is unverified: remove it (sidecar first) so a failed run
    cannot leave an old file looking usable.
    """
    sidecar_path(dest).unlink(missing_ok=True)
    if dest.is_file() or dest.is_symlink():
        dest.unlink()


def _is_local(url: str) -> bool:
    scheme = urlparse(url).scheme.lower()
    return scheme in {"file", ""} or (len(scheme) == 1 and os.name == "nt")


def _local_source(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme.lower() == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file url with a remote host {parsed.netloc!r} is not supported")
        return Path(url2pathname(parsed.path))
    return Path(url).expanduser()


def _copy_local(
    url: str,
    dest: Path,
    *,
    verify: Verify | None,
    label: str,
    progress: Progress | None,
    config: DownloadConfig,
    started: float,
) -> DownloadResult:
    """Local sources go through the same .part / verify / sidecar path as downloads."""
    try:
        source = _local_source(url)
        total = source.stat().st_size
    except (OSError, ValueError) as exc:
        raise DownloadError(label, url, f"cannot read local source: {exc}") from None
    if source.is_dir():
        raise DownloadError(label, url, "local source is a directory, expected a file")
    _check_size(total, config, label, url, "the local source holds")
    _remove_stale_final(dest)
    state = _PartState(part=part_path(dest), meta=part_meta_path(dest), url=url)
    state.reset()
    try:
        with source.open("rb") as src, state.part.open("wb") as out:
            while chunk := src.read(config.chunk_bytes):
                out.write(chunk)
                state.hasher.update(chunk)
                state.offset += len(chunk)
                if progress is not None:
                    progress(state.offset, total)
    except OSError as exc:
        state.discard()
        raise DownloadError(label, url, f"copying the local source failed: {exc}") from None
    state.total = total
    _finalize(state, dest, url, verify, label)
    seconds = time.monotonic() - started
    return DownloadResult(
        url=url, path=dest, bytes=state.offset, sha256=state.sha256, seconds=seconds,
        mb_per_s=_mb_per_s(state.offset, seconds), attempts=1, resumed_bytes=0, skipped=False,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Small helpers.


def _check_size(size: int, config: DownloadConfig, label: str, url: str, what: str) -> None:
    if config.max_bytes is not None and size > config.max_bytes:
        raise DownloadError(label, url, f"{what} {size} bytes, over max_bytes={config.max_bytes}")


def _client_timeout(config: DownloadConfig) -> aiohttp.ClientTimeout:
    import aiohttp

    return aiohttp.ClientTimeout(
        total=None, connect=None, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s
    )


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return f"timed out ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"


def _hash_file(path: Path) -> hashlib._Hash:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MIB):
            hasher.update(chunk)
    return hasher


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    tmp.replace(path)


def _mb_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else 0.0


def _run_sync(make_coro: Callable[[], Coroutine[object, object, DownloadResult]]) -> DownloadResult:
    """asyncio.run, or the same on a helper thread when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    results: list[DownloadResult] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(asyncio.run(make_coro()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="download-sync")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]
