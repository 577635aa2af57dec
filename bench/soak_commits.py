"""Concurrent-writer soak: rounds of 16 shards committing to one Lance table at once.

Each round (tests/harness/commit_soak.py) commits a first run of every shard into an empty table
(two shards raced by a second run), then re-runs every shard interleaved with a depth write of
every shard (one re-run raced), then writes every shard's depth, and audits every version the table
ever had. Prints commits, attempts per commit and violations per round (exit 1 on any). Rounds run
locally, and on moto's S3 server on loopback with --s3. Stops after --rounds.

    uv run python bench/soak_commits.py --rounds 5 [--s3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.commit_soak import moto_server, sixteen_shards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--s3", action="store_true", help="on moto's S3 server on loopback instead of local disk")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="soak-commits-") as work:
        for i in range(args.rounds):
            if args.s3:
                with moto_server(Path(work)) as (bucket, options):
                    report = sixteen_shards(f"s3://{bucket}/t.lance", options, shards=args.shards)
            else:
                report = sixteen_shards(str(Path(work) / f"round{i}.lance"), None, shards=args.shards)
            rounds.append(report)
            print(
                f"round {i}: {report.commits} commits, {report.depth_writes} depth writes, attempts max "
                f"{max(report.attempts)} median {statistics.median(report.attempts)}, {report.versions} versions "
                f"audited, {len(report.violations)} violations, {report.seconds} s",
                flush=True,
            )
    attempts = [a for r in rounds for a in r.attempts]
    summary = {
        "storage": "s3 (moto, loopback)" if args.s3 else "local",
        "rounds": args.rounds,
        "shards": args.shards,
        "commits": sum(r.commits for r in rounds),
        "depth_writes": sum(r.depth_writes for r in rounds),
        "attempts_max": max(attempts),
        "attempts_median": statistics.median(attempts),
        "attempts_mean": round(statistics.mean(attempts), 2),
        "versions_audited": sum(r.versions for r in rounds),
        "violations": [v for r in rounds for v in r.violations],
        "seconds": round(sum(r.seconds for r in rounds), 1),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
