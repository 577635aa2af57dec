"""What downloads record and return: the `.verified.json` sidecar that marks a file complete and
verified, a call's result, and the record of a video-list shard's failed videos.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from kinetics_assets.ingest.layout import sidecar_path

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


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


def verified_copy(dest: Path, url: str) -> DownloadResult | None:
    """The sidecar is trusted when it names the size of the file beside it; nothing is fetched."""
    verified = read_verified(dest)
    try:
        size = dest.stat().st_size
    except OSError:
        return None
    if verified is None or verified.bytes != size:
        return None
    return DownloadResult.already_verified(verified, url=url, path=dest)


def remove_stale_final(dest: Path) -> None:
    """A dest without a valid sidecar is unverified: remove it (sidecar first) so a failed run
    cannot leave an old file looking usable.
    """
    sidecar_path(dest).unlink(missing_ok=True)
    if dest.is_file() or dest.is_symlink():
        dest.unlink()


def mb_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else 0.0
