"""A short download soak: random faults per request over the loopback fault server (the full
campaign is `bench/soak_download.py`; its figures are in BENCHMARKS.md, "Reliability")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.harness.download_soak import FAULT_KINDS, _refetched, run_campaign
from tests.harness.http_server import RequestRecord

if TYPE_CHECKING:
    from pathlib import Path


def test_random_faults_per_request_end_verified_or_with_a_clear_error(tmp_path: Path):
    report = run_campaign(seed=7, requests=60, workdir=tmp_path)
    assert report.requests >= 60
    assert set(report.faults) == set(FAULT_KINDS)  # every kind drawn at least once
    assert report.violations == []
    assert set(report.outcomes) <= {"verified", "failed"}
    assert report.outcomes.get("verified", 0) >= 1
    assert report.refetched_bytes_range_honoured == 0
    # An HTML page is final; everything else is retried until the attempts run out.
    assert set(report.failure_causes) <= {"html page", "gave up after max attempts"}


def test_the_refetch_measure_sees_a_client_that_restarts_instead_of_resuming():
    # The client held 1000 bytes (its progress report), then asked again without a Range: a
    # server that honours Range would have sent only the rest, so 1000 bytes came twice.
    first = RequestRecord("GET", "a", None, None, status=200, bytes_sent=1500, range_start=0, received_at=1.0)
    again = RequestRecord("GET", "a", None, None, status=200, bytes_sent=4000, range_start=0, received_at=3.0)
    assert _refetched([first, again], [(2.0, 1000)]) == (1000, 0)
    # Resuming from what it held is free; a server that ignores the Range is counted apart.
    resumed = RequestRecord(
        "GET", "a", "bytes=1000-", '"e"', status=206, bytes_sent=3000, range_start=1000, received_at=3.0
    )
    assert _refetched([first, resumed], [(2.0, 1000)]) == (0, 0)
    ignored = RequestRecord(
        "GET", "a", "bytes=1000-", '"e"', status=200, bytes_sent=4000, range_start=0, received_at=3.0
    )
    assert _refetched([first, ignored], [(2.0, 1000)]) == (0, 1000)
