"""Download soak: a campaign of random network faults over the loopback fault server.

Every request gets a fault drawn at random (resets mid-body, 5xx, 429 with Retry-After, stalls, short
bodies, Range ignored, the file replaced mid-download, an HTML page with 200), archives are
downloaded one after another with the project's client until the server has answered --requests
GETs, and each outcome is checked (see tests/harness/download_soak.py). Prints the figures (and
writes them with --json); exits 1 when any violation was found. Stops on its own.

    uv run python bench/soak_download.py --seed 1 --requests 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.download_soak import run_campaign


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="seed of the archives and of the fault draws")
    parser.add_argument("--requests", type=int, default=200, help="GETs the server must answer (>= 1)")
    parser.add_argument("--fault-rate", type=float, default=0.5, help="chance that a request gets a fault")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-download-") as work:
        report = run_campaign(args.seed, args.requests, Path(work), fault_rate=args.fault_rate)
    figures = report.as_dict()
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1))
    return 1 if report.violations else 0


if __name__ == "__main__":
    raise SystemExit(main())
