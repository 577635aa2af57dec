"""A download campaign over the loopback fault server, with a fault drawn at random for each request.

`run_campaign(seed, requests, workdir)` serves freshly built `.tar.gz` archives from a
`FaultyFileServer`, downloads them one after another with `download_async` (the project's real
client, verifying each archive with `verify_archive` like `raw_archives` does) until the server has
answered at least `requests` GETs, and checks every outcome:

- an archive that downloads must be byte-identical (sha256) to the version of the file its last
  request was served from (the file can be replaced mid-campaign), with its sidecar written;
- one that does not must fail with a `DownloadError` that names the archive and the url, leaving no
  file at the destination;
- no download may run past `archive_timeout_s` (a hang);
- bytes the client already held must never be fetched again from a server that honoured the Range
  (measured from the client's own progress reports against each request's Range and answer).

Faults: resets mid-body, 5xx (500/502/503/504), 429 with Retry-After (seconds or a date), stalls
past the client's read timeout, short bodies, Range ignored, the file replaced mid-download (new
ETag: the client must end with the new version, never a splice) and an HTML page with 200. The
first faults drawn run through every kind once (in a seeded order) so even a short campaign covers
them all; after that each request gets a fault with probability `fault_rate`, its kind and
parameters drawn from a seeded generator. Downloads run one at a time, so a seed replays the same
campaign. Every loop is bounded by the request target and a cap on archives.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import io
import random
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kinetics_assets.ingest.archive import verify_archive
from kinetics_assets.ingest.download import DownloadConfig, DownloadError, download_async, make_session
from kinetics_assets.ingest.layout import sidecar_path
from tests.harness.http_server import Fault, FaultyFileServer

FAULT_KINDS = ("reset", "5xx", "429", "stall", "short_body", "ignore_range", "etag_changed", "html_200")

# The client's settings for the campaign: short waits so a campaign of hundreds of requests stays
# within minutes; the read timeout is below the stall so a stall is detected as one.
CAMPAIGN_CONFIG = DownloadConfig(
    connect_timeout_s=5.0,
    read_timeout_s=1.5,
    max_attempts=8,
    backoff_base_s=0.02,
    backoff_max_s=0.5,
    chunk_bytes=64 * 1024,
)
STALL_S = 4.0


@dataclass
class CampaignReport:
    seed: int
    requests_target: int
    fault_rate: float
    requests: int = 0
    archives: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    failure_causes: dict[str, int] = field(default_factory=dict)
    refetched_bytes_range_honoured: int = 0
    refetched_bytes_range_not_honoured: int = 0
    bytes_served: int = 0
    bytes_delivered: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def build_archive(rng: random.Random, name: str, version: int) -> bytes:
    """A small valid .tar.gz of incompressible members (64 KiB - 512 KiB in all)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for i in range(rng.randint(1, 4)):
            data = rng.randbytes(rng.randint(16, 128) * 1024)
            info = tarfile.TarInfo(f"{name}_v{version}_{i:02d}_000000_000010.mp4")
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _FaultPlan:
    """Draws a fault for each request: every kind once first (seeded order), then at `rate`."""

    def __init__(self, rng: random.Random, rate: float, root: Path, versions: dict[str, list[str]]):
        self.rng, self.rate, self.root, self.versions = rng, rate, root, versions
        self.cover = list(FAULT_KINDS)
        rng.shuffle(self.cover)
        self.drawn: collections.Counter = collections.Counter()
        self.lock = threading.Lock()

    def __call__(self, path: str) -> tuple[Fault, dict] | None:  # noqa: PLR0911 - one return per fault kind
        with self.lock:
            if self.cover:
                kind = self.cover.pop()
            elif self.rng.random() < self.rate:
                kind = self.rng.choice(FAULT_KINDS)
            else:
                return None
            self.drawn[kind] += 1
            size = (self.root / path).stat().st_size
            cut = self.rng.randint(1, max(1, size - 1))
            if kind == "reset":
                return Fault.RESET, {"after_bytes": cut}
            if kind == "5xx":
                return Fault.STATUS, {"status": self.rng.choice((500, 502, 503, 504))}
            if kind == "429":
                return Fault.RETRY_429, {"retry_after": self.rng.choice((0, 1, "date:1"))}
            if kind == "stall":
                return Fault.STALL, {"after_bytes": cut, "stall_s": STALL_S}
            if kind == "short_body":
                return Fault.SHORT_BODY, {"after_bytes": cut}
            if kind == "ignore_range":
                return Fault.IGNORE_RANGE, {}
            if kind == "etag_changed":
                version = len(self.versions[path])
                new = build_archive(random.Random(f"{path}:{version}"), path.split(".", maxsplit=1)[0], version)
                self.versions[path].append(hashlib.sha256(new).hexdigest())
                return Fault.CHANGE_ETAG, {"after_bytes": cut, "new_content": new}
            return Fault.HTML_200, {}


def _refetched(requests, progress: list[tuple[float, int]]) -> tuple[int, int]:
    """Bytes the client already held and got again: (where the Range was honoured, where it was not).

    The client's holding is its last progress report (never more than it really held); a 206 that
    starts below it, or a request without a Range while the client held bytes, re-fetches them."""
    events = [(t, "progress", off) for t, off in progress] + [(r.received_at, "request", r) for r in requests]
    events.sort(key=lambda e: e[0])
    held, honoured, not_honoured = 0, 0, 0
    for _, kind, item in events:
        if kind == "progress":
            held = item
            continue
        r = item
        if r.status == 206 and r.range_start is not None:
            honoured += max(0, held - r.range_start)
        elif r.status == 200 and r.fault != "html_200":
            if r.range is None:
                honoured += held  # the client dropped what it held without even asking to resume
            else:
                not_honoured += held
            held = 0
    return honoured, not_honoured


async def _one(  # noqa: C901 - one archive's outcome, judged in one place
    session,
    server: FaultyFileServer,
    name: str,
    *,
    dest: Path,
    timeout_s: float,
    report: CampaignReport,
    versions: list[str],
):
    progress: list[tuple[float, int]] = []
    url = server.url(name)

    def on_progress(done: int, total: int | None) -> None:
        progress.append((time.monotonic(), done))

    before = len(server.requests)
    try:
        result = await asyncio.wait_for(
            download_async(
                session,
                url,
                dest,
                config=CAMPAIGN_CONFIG,
                label=name,
                progress=on_progress,
                verify=lambda p: verify_archive(p, label=name),
            ),
            timeout=timeout_s,
        )
        outcome, error = "verified", None
    except TimeoutError:
        outcome, error, result = "hang", None, None
    except DownloadError as exc:
        outcome, error, result = "failed", exc, None
    except Exception as exc:  # noqa: BLE001 - anything else is a violation: the client must raise DownloadError
        outcome, error, result = "unclear_error", exc, None
    records = server.requests[before:]
    mine = [r for r in records if r.path == name and r.method == "GET"]
    honoured, not_honoured = _refetched(mine, progress)
    report.refetched_bytes_range_honoured += honoured
    report.refetched_bytes_range_not_honoured += not_honoured
    report.bytes_served += sum(r.bytes_sent for r in mine)
    # The file the last request was served from: replaced once after each request that drew
    # "etag_changed" (the server swaps the file when that request ends).
    changes = sum(1 for r in mine[:-1] if r.fault == Fault.CHANGE_ETAG.value)
    expected = versions[changes]
    if outcome == "verified":
        got = hashlib.sha256(await asyncio.to_thread(dest.read_bytes)).hexdigest()
        report.bytes_delivered += (await asyncio.to_thread(dest.stat)).st_size
        if got != expected or result.sha256 != expected:
            outcome = "wrong_bytes"
            which = f"version {versions.index(got)}" if got in versions else "no version (a splice?)"
            report.violations.append(
                f"{name}: downloaded {which}, sha256 {got[:12]}; the last request was "
                f"served version {changes}, sha256 {expected[:12]}"
            )
        elif not sidecar_path(dest).is_file():
            outcome = "no_sidecar"
            report.violations.append(f"{name}: verified without a sidecar")
    elif outcome == "failed":
        cause = error.cause
        key = (
            "html page" if "HTML page" in cause else "gave up after max attempts" if "gave up" in cause else cause[:60]
        )
        report.failure_causes[key] = report.failure_causes.get(key, 0) + 1
        if name not in str(error) or url not in str(error):
            report.violations.append(f"{name}: error does not name the archive and url: {error}")
        if await asyncio.to_thread(dest.exists):
            report.violations.append(f"{name}: failed but left a file at {dest}")
    elif outcome == "hang":
        report.violations.append(f"{name}: still downloading after {timeout_s} s")
    else:
        report.violations.append(f"{name}: {type(error).__name__}: {error}")
    if honoured:
        report.violations.append(f"{name}: {honoured} bytes fetched twice from a server that honoured Range")
    report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1


def run_campaign(
    seed: int, requests: int, workdir: Path, fault_rate: float = 0.5, archive_timeout_s: float = 90.0
) -> CampaignReport:
    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    started = time.monotonic()
    rng = random.Random(seed)
    root, out = Path(workdir) / "served", Path(workdir) / "downloads"
    root.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    report = CampaignReport(seed=seed, requests_target=requests, fault_rate=fault_rate)
    versions: dict[str, list[str]] = {}
    plan = _FaultPlan(random.Random(seed + 1), fault_rate, root, versions)

    async def campaign(server: FaultyFileServer) -> None:
        async with make_session(CAMPAIGN_CONFIG) as session:
            for index in range(requests):  # at least one request per archive: bounded by the target
                if len(server.requests) >= requests:
                    break
                name = f"part_{index:04d}.tar.gz"
                first = build_archive(rng, name.split(".", maxsplit=1)[0], 0)
                versions[name] = [hashlib.sha256(first).hexdigest()]
                (root / name).write_bytes(first)
                await _one(
                    session,
                    server,
                    name,
                    dest=out / name,
                    timeout_s=archive_timeout_s,
                    report=report,
                    versions=versions[name],
                )
                report.archives += 1

    with FaultyFileServer(root) as server:
        server.set_fault_source(plan)
        asyncio.run(campaign(server))
        report.requests = sum(1 for r in server.requests if r.method == "GET")
    report.faults = dict(sorted(plan.drawn.items()))
    report.seconds = round(time.monotonic() - started, 1)
    return report
