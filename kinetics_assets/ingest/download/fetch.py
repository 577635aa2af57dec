"""The HTTP transfer: one download's attempts with Range resumes, retries and backoff, each answer
classified as retryable or final.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from kinetics_assets.ingest.download.config import DownloadConfig, DownloadError, Progress
from kinetics_assets.ingest.download.partial import PartState, PartWriter, part_worker

if TYPE_CHECKING:
    import concurrent.futures

    # Imported where a download first needs it: the code location names DownloadConfig alone.
    import aiohttp

# Suffixes for which an HTML answer is legitimate; any other request expects binary data.
_HTML_SUFFIXES = (".html", ".htm")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


def make_session(config: DownloadConfig = DownloadConfig(), **kwargs: Any) -> aiohttp.ClientSession:
    """A session suited to many downloads (pass it to `download_async`). Must be created inside a
    running event loop.
    """
    import aiohttp

    kwargs.setdefault("timeout", _client_timeout(config))
    kwargs.setdefault("auto_decompress", False)
    kwargs.setdefault("read_bufsize", config.chunk_bytes)
    return aiohttp.ClientSession(**kwargs)


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


class HttpFetch:
    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        state: PartState,
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
        worker = part_worker()
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
        writer = PartWriter(self.state, worker)
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
