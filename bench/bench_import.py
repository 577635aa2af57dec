"""What loading the code location costs a process: wall time and peak memory of a fresh interpreter
that imports `dagster`, against one that imports `kinetics_assets.definitions` (and one that also
builds the definitions, as the webserver, the daemon and every run process do), for this tree and
for a baseline commit checked out beside it, interleaved round by round in one run of this script.

    uv run python bench/bench_import.py [--rounds 7] [--baseline 1a1017e] [--json bench/results/import.json]

Peak memory is the child's own `ru_maxrss` (from `os.wait4`). The default settings are used (the
K700-2020 release's shard list); no KINETICS_* variable of the caller's environment is passed on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

IMPORT_DAGSTER = "import dagster"
IMPORT_DEFS = "import kinetics_assets.definitions"
BUILD_DEFS = "import kinetics_assets.definitions as d; d.defs()"
HEAVY = ("torch", "transformers", "ray", "lance", "duckdb", "aiohttp", "matplotlib", "av", "numpy")
# The definitions built either way: at import (the baseline), or by calling the @dg.definitions function.
LIST_HEAVY = (
    "import sys, dagster as dg, kinetics_assets.definitions as d\n"
    "if not isinstance(d.defs, dg.Definitions): d.defs()\n"
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
)


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINETICS_", "DAGSTER_", "PYTHON"))}
    # The tree's own package first: the environment's editable install points at this checkout.
    env["PYTHONPATH"] = str(tree)
    env["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    return env


def measure(code: str, tree: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one fresh interpreter running `code` in `tree`."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tree, env=_env(tree), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{code!r} in {tree} failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024


def heavy_modules(tree: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", LIST_HEAVY], cwd=tree, env=_env(tree), capture_output=True, text=True, check=True
    )
    return [m for m in out.stdout.strip().splitlines()[-1].split(",") if m] if out.stdout.strip() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", default="1a1017e", help="commit measured beside this tree")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.baseline], cwd=REPO, check=True)
        try:
            cases = {
                "import dagster": (IMPORT_DAGSTER, REPO),
                "baseline: import kinetics_assets.definitions (builds them)": (IMPORT_DEFS, old),
                "this tree: import kinetics_assets.definitions": (IMPORT_DEFS, REPO),
                "this tree: import and build the definitions": (BUILD_DEFS, REPO),
            }
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
            measure(IMPORT_DAGSTER, REPO)  # warm the file cache once, for every case alike
            for _ in range(args.rounds):
                for name, (code, tree) in cases.items():
                    samples[name].append(measure(code, tree))
            heavy = {"baseline": heavy_modules(old), "this tree": heavy_modules(REPO)}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=False)

    base_wall = statistics.median(w for w, _ in samples["import dagster"])
    base_rss = statistics.median(r for _, r in samples["import dagster"])
    rows = []
    print(f"{args.rounds} fresh interpreters per case, interleaved; medians; {platform.node()} {os.cpu_count()} CPUs")
    print(f"{'case':62} {'wall s':>7} {'x dagster':>9} {'peak MB':>8} {'x dagster':>9}")
    for name, values in samples.items():
        wall = statistics.median(w for w, _ in values)
        rss = statistics.median(r for _, r in values)
        rows.append({"case": name, "wall_s": round(wall, 3), "peak_rss_mb": round(rss, 1), "samples": values})
        print(f"{name:62} {wall:7.2f} {wall / base_wall:9.2f} {rss:8.0f} {rss / base_rss:9.2f}")
    print("heavy modules loaded with the definitions:", heavy)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"rounds": args.rounds, "baseline": args.baseline, "cases": rows, "heavy": heavy}, indent=1)
        )


if __name__ == "__main__":
    main()
