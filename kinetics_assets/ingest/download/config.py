"""A download's settings and its one error: what every part of the download package shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kinetics_assets.limits import DEFAULT_LIMITS

_MIN_CHUNK_BYTES = 4096

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


class DownloadError(Exception):
    """A download that could not be completed or verified; names the shard, the url and the cause."""

    def __init__(self, label: str, url: str, cause: str, *, status: int | None = None) -> None:
        self.label = label
        self.url = url
        self.cause = cause
        self.status = status
        super().__init__(f"download of {label!r} from {url} failed: {cause}")


def check_size(size: int, config: DownloadConfig, label: str, url: str, what: str) -> None:
    if config.max_bytes is not None and size > config.max_bytes:
        raise DownloadError(label, url, f"{what} {size} bytes, over max_bytes={config.max_bytes}")
