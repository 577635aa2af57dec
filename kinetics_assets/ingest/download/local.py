"""Local sources (a path or a file:// url): copied through the same .part, verification and sidecar
as a download.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from kinetics_assets.ingest.download.config import DownloadConfig, DownloadError, Progress, Verify, check_size
from kinetics_assets.ingest.download.partial import PartState, finalize
from kinetics_assets.ingest.download.records import DownloadResult, mb_per_s, remove_stale_final
from kinetics_assets.ingest.layout import part_meta_path, part_path


def is_local(url: str) -> bool:
    scheme = urlparse(url).scheme.lower()
    return scheme in {"file", ""} or (len(scheme) == 1 and os.name == "nt")


def _local_source(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme.lower() == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file url with a remote host {parsed.netloc!r} is not supported")
        return Path(url2pathname(parsed.path))
    return Path(url).expanduser()


def copy_local(
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
    check_size(total, config, label, url, "the local source holds")
    remove_stale_final(dest)
    state = PartState(part=part_path(dest), meta=part_meta_path(dest), url=url)
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
    finalize(state, dest, url, verify, label)
    seconds = time.monotonic() - started
    return DownloadResult(
        url=url, path=dest, bytes=state.offset, sha256=state.sha256, seconds=seconds,
        mb_per_s=mb_per_s(state.offset, seconds), attempts=1, resumed_bytes=0, skipped=False,
    )  # fmt: skip
