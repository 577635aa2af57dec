"""A short crash soak on local storage (tests/harness/crash_soak.py): runs over several shards at once
on one Ray head, SIGKILLs of runs, step processes, Ray workers and the Ray head at random moments,
dead runs released, failed shards re-launched, and the table, the reader's view of it and the
Dagster instance audited after every cycle. The full campaigns are `bench/soak_crash.py`."""

from __future__ import annotations

import pytest

from tests.harness.crash_soak import run_campaign

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

KILLS = 2
MAX_WALL_S = 300.0  # no cycle starts after this that would end past it (the first one always runs)


# One storage in CI keeps the suite inside its time limit; the S3 campaign is `bench/soak_crash.py --storage s3`.
@pytest.mark.parametrize(("storage", "seed"), [("local", 101)])
def test_crash_soak_finds_no_violation(storage, seed, tmp_path):
    summary = run_campaign(storage, seed, KILLS, MAX_WALL_S, work=tmp_path / "work")
    print(summary.as_dict())  # noqa: T201 - the campaign's figures, for whoever runs it with -s
    assert summary.violations == []
    assert summary.kills >= 1, f"no process was killed in {summary.cycles} cycle(s)"
    assert summary.reader_reads > 0, "the table reader never read the table"
    # Every cycle with a kill ended with every shard complete again.
    assert summary.recoveries >= 1
    assert summary.runs_timed_out == 0
