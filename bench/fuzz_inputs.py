"""Fuzzed inputs: mutated clips through the transcode engine, the DataLoader decode and the depth decode.

Mutates generated clips and, when KINETICS_REAL_VIDEOS_DIR names a folder of real clips, those too
(read in place), with bit flips, truncation, corrupted headers, one container's bytes under
another's name, huge declared sizes, zero-length streams and the empty file; runs each mutant in a
watched worker process (see tests/harness/fuzz.py) and counts outcomes. Prints the figures (and
writes them with --json); exits 1 on any hang, crash or error outside the vocabulary. Inputs
that hang or crash are kept under --keep for a regression test. Stops on its own.

    KINETICS_REAL_VIDEOS_DIR=<folder> uv run python bench/fuzz_inputs.py --seed 1 --count 500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.fuzz import PER_CLIP_TIMEOUT_S, run_fuzz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=500, help="mutated inputs to run")
    parser.add_argument(
        "--timeout-s", type=float, default=PER_CLIP_TIMEOUT_S, help="TranscodeConfig.timeout_s per clip"
    )
    parser.add_argument("--keep", type=Path, help="folder for inputs that hung or crashed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    real = os.environ.get("KINETICS_REAL_VIDEOS_DIR")
    with tempfile.TemporaryDirectory(prefix="fuzz-inputs-") as work:
        report = run_fuzz(
            args.seed,
            args.count,
            Path(work),
            real_dir=Path(real) if real else None,
            timeout_s=args.timeout_s,
            keep_failures=args.keep,
        )
    figures = {**report.as_dict(), "real_clips": bool(real)}
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
    return 1 if report.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
