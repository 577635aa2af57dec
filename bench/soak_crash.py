"""Randomized crash soak: shards materializing through `dagster asset materialize` on one Ray head
while a driver SIGKILLs a random process (a run, a step process, a Ray worker, the Ray head) at
random moments, then releases dead runs, re-launches what failed and audits the table and the
Dagster instance after every cycle (tests/harness/crash_soak.py). Prints and writes a JSON summary:
kills by victim, phase and run kind, recoveries, re-runs, violations, wall. Exit 1 on any violation.
Stops after --kills kills or --max-wall-s seconds, whichever comes first; Ctrl-C or SIGTERM stops it
early and it still reports what ran.

    uv run python bench/soak_crash.py --storage local --seed 1 --kills 100
    uv run python bench/soak_crash.py --storage s3 --seed 2 --kills 100
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.crash_soak import run_campaign


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--storage",
        choices=("local", "s3"),
        default="local",
        help="the table (and archives) on local disk or on moto's S3 server on loopback",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--max-wall-s", type=float, default=4 * 3600.0, help="stop after this long (default 4 h)")
    parser.add_argument(
        "--work", type=Path, help="keep the runs' logs, instance and table here (default: a temp folder)"
    )
    parser.add_argument("--json", type=Path, help="write the summary here too")
    args = parser.parse_args(argv)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=False)

    def interrupt(_signum: int, _frame: object) -> None:  # SIGTERM stops the campaign like Ctrl-C: it still reports
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)

    def log(line: str) -> None:
        print(time.strftime("%H:%M:%S ") + line, flush=True)

    summary = run_campaign(args.storage, args.seed, args.kills, args.max_wall_s, work=args.work, log=log).as_dict()
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
