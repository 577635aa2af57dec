"""A short fuzz run: mutated clips through the transcode engine and the DataLoader's decode, each in
a watched worker process (the full run is `bench/fuzz_inputs.py`; figures in BENCHMARKS.md)."""

from __future__ import annotations

import os
from pathlib import Path

from kinetics_assets.transcode import ERROR_KINDS
from tests.harness.fuzz import MUTATIONS, run_fuzz


def test_mutated_clips_end_ok_or_with_a_known_error_and_never_hang_or_crash(tmp_path: Path):
    real = os.environ.get("KINETICS_REAL_VIDEOS_DIR")  # real clips join the generated ones when present
    report = run_fuzz(seed=5, count=2 * len(MUTATIONS), workdir=tmp_path / "work",
                      real_dir=Path(real) if real and Path(real).is_dir() else None, timeout_s=20.0)
    assert report.violations == []
    assert report.hangs == 0 and report.crashes == 0
    assert report.by_mutation == {m: 2 for m in MUTATIONS}
    assert set(report.transcode) <= ERROR_KINDS | {"ok"}
    assert sum(report.transcode.values()) == report.inputs == 2 * len(MUTATIONS)
    # The empty file is named as such; a stream without packets is never "ok".
    assert report.transcode_by_mutation["empty"] == {"empty_file": 2}
    assert "ok" not in report.transcode_by_mutation["zero_length_stream"]
    assert report.decode.get("ok", 0) < report.inputs
