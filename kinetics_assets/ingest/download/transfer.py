"""One download from start to end: skip a verified copy, fetch (or copy a local source) into the
`.part`, verify it, move it into place and write the sidecar last.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from kinetics_assets.ingest.download.config import DownloadConfig, DownloadError, Progress, Verify, check_size
from kinetics_assets.ingest.download.fetch import HttpFetch, make_session
from kinetics_assets.ingest.download.local import copy_local, is_local
from kinetics_assets.ingest.download.partial import PartState, finalize
from kinetics_assets.ingest.download.records import DownloadResult, mb_per_s, remove_stale_final, verified_copy

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    import aiohttp


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
        if is_local(url):  # no session needed
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
    skipped = verified_copy(dest, url)
    if skipped is not None:
        check_size(skipped.bytes, config, label, url, f"the verified copy at {dest} holds")
        return skipped
    if is_local(url):
        return await asyncio.to_thread(
            copy_local, url, dest, verify=verify, label=label, progress=progress, config=config, started=started
        )
    scheme = urlparse(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(label, url, f"unsupported url scheme {scheme!r} (expected http, https, file)")
    if session is None:
        raise DownloadError(label, url, "an aiohttp session is required for http(s) urls")

    remove_stale_final(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    state = await asyncio.to_thread(PartState.load, dest, url)  # may re-hash a large .part
    fetch = HttpFetch(session=session, url=url, state=state, config=config, label=label, progress=progress)
    await fetch.run()
    await asyncio.to_thread(finalize, fetch.state, dest, url, verify, label)
    seconds = time.monotonic() - started
    return DownloadResult(
        url=url,
        path=dest,
        bytes=fetch.state.offset,
        sha256=fetch.state.sha256,
        seconds=seconds,
        mb_per_s=mb_per_s(fetch.received_bytes, seconds),
        attempts=fetch.attempts,
        resumed_bytes=fetch.resumed_bytes,
        skipped=False,
    )


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
