"""Resumable, verified downloads of shard archives and videos.

A shard is only useful when complete and intact, and shards are large (Kinetics-400 val parts are
~1.5 GB), so a download streams to `<dest>.part`, resumes interrupted transfers with validated
Range requests, verifies the finished file, and only then moves it into place and writes a
`<dest>.verified.json` sidecar. The sidecar is written last: its presence is the single signal that
`dest` is complete and verified, which makes re-runs free. One download per `dest` at a time: two
concurrent calls for the same destination would share one .part file.

No dagster or ray imports: this package is used by assets, command line tools and tests alike.
"""

from kinetics_assets.ingest.download.config import DownloadConfig, DownloadError, Progress, Verify
from kinetics_assets.ingest.download.fetch import make_session
from kinetics_assets.ingest.download.records import (
    DownloadResult,
    FailedDownload,
    VerifiedFile,
    read_failed_downloads,
    read_verified,
    write_failed_downloads,
)
from kinetics_assets.ingest.download.transfer import download, download_async

__all__ = [
    "DownloadConfig",
    "DownloadError",
    "DownloadResult",
    "FailedDownload",
    "Progress",
    "VerifiedFile",
    "Verify",
    "download",
    "download_async",
    "make_session",
    "read_failed_downloads",
    "read_verified",
    "write_failed_downloads",
]
