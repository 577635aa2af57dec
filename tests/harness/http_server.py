"""A loopback file server with switchable faults, for testing downloads against a real HTTP stack.

`FaultyFileServer(root)` serves the files under `root` on 127.0.0.1 (a free port) from an aiohttp
server on a background thread, with Range / If-Range / ETag / Last-Modified support. Faults are
queued per path with `add_fault(path, Fault.X, times=N, **params)`: the first N requests for that path
get the fault, then the next queued fault applies, then the file is served normally. A fault source
(`set_fault_source(draw)`) is asked for a fault for every request that has none queued: soak
campaigns draw faults at random per request that way. Every request is recorded (`requests` /
`requests_for(path)`), so tests can check what was fetched and how often.

Run as a module (`python -m tests.harness.http_server ROOT`) to serve a folder from a separate process,
as the download benchmark does; it prints the base url and serves until stdin closes or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import enum
import os
import re
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Fault", "FaultyFileServer", "RequestRecord"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_SEND_CHUNK = 256 * 1024
_SETTLE_S = 10.0  # how long `requests` waits for handlers still running
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in.</body></html>"


class Fault(enum.StrEnum):
    """What a faulty request does. Body faults cut the body after `after_bytes` (default: half)."""

    RESET = "reset"  # send after_bytes of the body, then reset the connection (RST)
    ERROR_500 = "error_500"  # 500 Internal Server Error
    RETRY_429 = "retry_429"  # 429 with Retry-After: `retry_after` seconds (int) or "date:<seconds>"
    STATUS = "status"  # any `status` (e.g. 503, 408, 403), optional `retry_after`
    STALL = "stall"  # send after_bytes, then go silent for `stall_s`, then drop the connection
    SHORT_BODY = "short_body"  # announce the full Content-Length, send after_bytes, close cleanly (FIN)
    IGNORE_RANGE = "ignore_range"  # answer 200 with the full body whatever the Range says
    CHANGE_ETAG = "change_etag"  # like RESET, then replace the file with `new_content` (new ETag)
    HTML_200 = "html_200"  # 200 text/html login page instead of the file
    NOT_FOUND = "not_found"  # 404 even though the file exists


@dataclass
class RequestRecord:
    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int = 0
    bytes_sent: int = 0  # body bytes handed to the socket
    fault: str | None = None
    range_start: int | None = None  # first body byte sent (206) or 0 (200)
    received_at: float = 0.0  # time.monotonic() when the request arrived


@dataclass
class _QueuedFault:
    fault: Fault
    remaining: int
    params: dict = field(default_factory=dict)


class FaultyFileServer:
    """Context manager: `with FaultyFileServer(tmp_path) as server: server.url("a.tar.gz")`."""

    def __init__(self, root: Path, *, etag: bool = True, last_modified: bool = True, use_sendfile: bool = True):
        self.root = Path(root).resolve()
        self.send_etag = etag
        self.send_last_modified = last_modified
        self.use_sendfile = use_sendfile
        self.port: int | None = None
        self._faults: dict[str, list[_QueuedFault]] = {}
        self._fault_source: Callable[[str], tuple[Fault, dict] | None] | None = None
        self._records: list[RequestRecord] = []
        self._in_flight = 0  # requests whose handler has not finished: their records are still changing
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as exc:  # noqa: BLE001 - surfaced to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="faulty-file-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        if self.port is None:
            raise RuntimeError("test HTTP server did not start within 30 s")
        return self

    async def _start_site(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        app.router.add_route("HEAD", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ----------------------------------------------------------------------------- test API
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def add_fault(self, path: str, fault: Fault, *, times: int = 1, **params) -> None:
        """Queue `fault` for the next `times` requests of `path` (after faults queued before it)."""
        with self._lock:
            self._faults.setdefault(path.lstrip("/"), []).append(_QueuedFault(Fault(fault), times, params))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._fault_source = None

    def set_fault_source(self, draw: Callable[[str], tuple[Fault, dict] | None] | None) -> None:
        """`draw(path)` gives the fault (and its parameters) of each GET that has none queued, or None."""
        with self._lock:
            self._fault_source = draw

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request so far, once the handlers still running have finished (at most `_SETTLE_S`).

        A client that gives up on a response closes the socket while the handler may still be writing;
        waiting here makes a test's count independent of how fast the server notices.
        """
        with self._settled:
            self._settled.wait_for(lambda: self._in_flight == 0, timeout=_SETTLE_S)
            return list(self._records)

    def requests_for(self, path: str) -> list[RequestRecord]:
        path = path.lstrip("/")
        return [r for r in self.requests if r.path == path]

    def clear_requests(self) -> None:
        with self._lock:
            self._records.clear()

    def etag_of(self, path: str) -> str:
        return _etag((self.root / path).stat())

    # ----------------------------------------------------------------------------- serving
    def _take_fault(self, path: str, method: str = "GET") -> _QueuedFault | None:
        with self._lock:
            queue = self._faults.get(path, [])
            while queue and queue[0].remaining <= 0:
                queue.pop(0)
            if not queue:
                drawn = self._fault_source(path) if self._fault_source is not None and method == "GET" else None
                return _QueuedFault(Fault(drawn[0]), 0, dict(drawn[1])) if drawn else None
            queue[0].remaining -= 1
            return queue[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["tail"]
        queued = self._take_fault(path, request.method)
        record = RequestRecord(
            method=request.method,
            path=path,
            range=request.headers.get("Range"),
            if_range=request.headers.get("If-Range"),
            fault=queued.fault.value if queued else None,
            received_at=time.monotonic(),
        )
        with self._settled:
            self._in_flight += 1
        try:
            return await self._serve(request, path, queued, record)
        finally:
            with self._settled:
                self._records.append(record)
                self._in_flight -= 1
                self._settled.notify_all()

    async def _serve(  # noqa: C901, PLR0911, PLR0912, PLR0915 - one branch per injected fault, read as a table
        self, request: web.Request, path: str, queued: _QueuedFault | None, record: RequestRecord
    ) -> web.StreamResponse:
        fault = queued.fault if queued else None
        params = queued.params if queued else {}
        file_path = (self.root / path).resolve()
        if fault is Fault.NOT_FOUND or not file_path.is_relative_to(self.root) or not file_path.is_file():
            record.status = 404
            return web.Response(status=404, text=f"404: {path} not found\n")
        if fault in (Fault.ERROR_500, Fault.RETRY_429, Fault.STATUS):
            status = {Fault.ERROR_500: 500, Fault.RETRY_429: 429}.get(fault, params.get("status", 503))
            headers = {}
            retry_after = params.get("retry_after", 1 if fault is Fault.RETRY_429 else None)
            if retry_after is not None:
                headers["Retry-After"] = _retry_after_value(retry_after)
            record.status = status
            return web.Response(status=status, text=f"{status} (injected fault)\n", headers=headers)
        if fault is Fault.HTML_200:
            record.status = 200
            record.bytes_sent = len(HTML_PAGE)
            return web.Response(status=200, body=HTML_PAGE, content_type="text/html")

        st = file_path.stat()
        size = st.st_size
        etag, last_modified = _etag(st), email.utils.formatdate(st.st_mtime, usegmt=True)
        start, end = 0, size - 1
        status = 200
        range_header = request.headers.get("Range")
        if range_header and fault is not Fault.IGNORE_RANGE and self._if_range_holds(request, etag, last_modified):
            parsed = _parse_range(range_header, size)
            if parsed == "unsatisfiable":
                record.status = 416
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            if parsed is not None:
                start, end = parsed
                status = 206
        count = max(0, end - start + 1)
        resp = web.StreamResponse(status=status)
        resp.content_length = count
        resp.content_type = _content_type(path)
        resp.headers["Accept-Ranges"] = "bytes"
        if self.send_etag:
            resp.headers["ETag"] = etag
        if self.send_last_modified:
            resp.headers["Last-Modified"] = last_modified
        if status == 206:
            resp.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        record.status, record.range_start = status, start
        await resp.prepare(request)
        if request.method == "HEAD" or count == 0:
            await resp.write_eof()
            return resp

        cut_faults = (Fault.RESET, Fault.STALL, Fault.SHORT_BODY, Fault.CHANGE_ETAG)
        if fault in cut_faults:
            limit = min(count, int(params.get("after_bytes", count // 2)))
            await self._send_range(
                request, resp, file_path=file_path, start=start, count=limit, record=record, allow_sendfile=False
            )
            await _wait_flushed(request)
            if fault is Fault.STALL:
                await asyncio.sleep(float(params.get("stall_s", 5.0)))
                _abort(request)
            elif fault is Fault.SHORT_BODY:
                request.transport.close()
            else:
                await asyncio.sleep(0.05)  # let the client read what was sent before the reset
                _abort(request)
                if fault is Fault.CHANGE_ETAG:
                    _replace_content(file_path, params.get("new_content"))
            return resp
        await self._send_range(
            request,
            resp,
            file_path=file_path,
            start=start,
            count=count,
            record=record,
            allow_sendfile=self.use_sendfile,
        )
        await resp.write_eof()
        return resp

    def _if_range_holds(self, request: web.Request, etag: str, last_modified: str) -> bool:
        """RFC 9110: a Range applies only when If-Range (if any) still names the current version."""
        if_range = request.headers.get("If-Range")
        if if_range is None:
            return True
        if if_range.startswith('"'):
            return self.send_etag and if_range == etag
        return self.send_last_modified and if_range == last_modified

    async def _send_range(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        *,
        file_path: Path,
        start: int,
        count: int,
        record: RequestRecord,
        allow_sendfile: bool,
    ) -> None:
        with file_path.open("rb") as fh:
            if allow_sendfile and request.transport is not None:
                try:
                    await asyncio.get_running_loop().sendfile(request.transport, fh, start, count)
                except NotImplementedError:
                    pass
                else:
                    record.bytes_sent = count
                    return
            fh.seek(start)
            remaining = count
            while remaining > 0:
                chunk = fh.read(min(_SEND_CHUNK, remaining))
                if not chunk:
                    break
                await resp.write(chunk)
                record.bytes_sent += len(chunk)
                remaining -= len(chunk)


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def _content_type(path: str) -> str:
    lower = path.lower()
    if lower.endswith((".tar.gz", ".tgz", ".gz")):
        return "application/gzip"
    if lower.endswith(".mp4"):
        return "video/mp4"
    if lower.endswith((".txt", ".csv")):
        return "text/plain"
    return "application/octet-stream"


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(start, end) inclusive, "unsatisfiable", or None for a header we do not understand (ignored)."""
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else "unsatisfiable"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


def _retry_after_value(value: float | str) -> str:
    """An int means delta-seconds; "date:<seconds>" means an HTTP date that many seconds ahead."""
    if isinstance(value, str) and value.startswith("date:"):
        return email.utils.formatdate(time.time() + float(value[5:]), usegmt=True)
    return str(value)


async def _wait_flushed(request: web.Request, timeout_s: float = 5.0) -> None:
    transport = request.transport
    deadline = time.monotonic() + timeout_s
    # A transport has no event for an empty write buffer: poll it.
    while transport is not None and transport.get_write_buffer_size() > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.002)


def _abort(request: web.Request) -> None:
    """Close with RST (SO_LINGER 0), like a crashed peer or a middlebox dropping the connection."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _replace_content(file_path: Path, new_content: bytes | None) -> None:
    """A new file (new inode) with a later mtime, so both ETag and Last-Modified change."""
    old = file_path.read_bytes()
    data = new_content if new_content is not None else old[::-1]
    tmp = file_path.with_name(file_path.name + ".new")
    tmp.write_bytes(data)
    later = file_path.stat().st_mtime + 2
    os.utime(tmp, (later, later))
    tmp.replace(file_path)


def main(argv: list[str]) -> int:
    """Serve a folder from this process until stdin closes (for benchmarks)."""
    if len(argv) != 1:
        print("usage: python -m tests.harness.http_server ROOT", file=sys.stderr)  # noqa: T201 - a command's usage
        return 2
    server = FaultyFileServer(Path(argv[0])).start()
    print(server.base_url, flush=True)  # noqa: T201 - the URL, read by the benchmark that started it
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
