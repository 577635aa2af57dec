"""Partial-file state: the `.part` file, its running hash, and the validators that make resuming
safe; and the step that turns a complete `.part` into the verified file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from kinetics_assets.ingest.download.config import DownloadError, Verify
from kinetics_assets.ingest.download.records import VerifiedFile
from kinetics_assets.ingest.layout import part_meta_path, part_path, sidecar_path

if TYPE_CHECKING:
    from pathlib import Path

MIB = 1 << 20
# Chunks queued for the writer thread at most; bounds memory to ~(1 + this) chunks.
_MAX_PENDING_WRITES = 4


@dataclass
class PartState:
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
    def load(cls, dest: Path, url: str) -> PartState:
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


class PartWriter:
    """Writes and hashes chunks on one worker thread (file writes and hashlib both release the GIL),
    so the event loop keeps reading the socket meanwhile. Hashing each chunk right after writing it
    reads it while it is still in the CPU cache; on 2 cores this beat a separate hashing thread
    (BENCHMARKS.md). Chunk order is kept; memory is bounded by the chunks in flight.
    """

    def __init__(self, state: PartState, worker: concurrent.futures.ThreadPoolExecutor) -> None:
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


def part_worker() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread a download call writes and hashes on (see PartWriter)."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="download-write")


def finalize(state: PartState, dest: Path, url: str, verify: Verify | None, label: str) -> None:
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
