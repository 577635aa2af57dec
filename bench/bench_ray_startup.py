"""What a step pays to get Ray: starting a local Ray of its own vs joining one running cluster.

Each sample is a fresh Python process, as a Dagster step process is. Timed inside the process, after
`import ray` (which both pay alike):
  - local: `ray.init(num_cpus=2)` (starts GCS, raylet, workers) + first trivial task + `ray.shutdown()`
  - join:  `ray.init(address=<running head>)` + first trivial task + `ray.shutdown()` (disconnect)
and, through Dagster, `dg.materialize` of a one-task asset that uses `RayResource` with and without
RAY_ADDRESS (the whole in-process run: resource set-up, the task, teardown).

The head is started once (`ray start --head`, loopback, token authentication) and its start-up is
reported as the one-off cost that joining moves out of every step.

    uv run python bench/bench_ray_startup.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness.ray_head import running_ray_head  # noqa: E402

RESULTS = REPO / "bench" / "results" / "ray_startup.json"

RAY_ONLY = """
import json, os, sys, time
import ray
t0 = time.perf_counter()
address = os.environ.get("RAY_ADDRESS")
if address:
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
else:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
t_init = time.perf_counter()
assert ray.get(ray.remote(lambda: 1).remote()) == 1
t_task = time.perf_counter()
ray.shutdown()
t_end = time.perf_counter()
print(json.dumps({"init_s": t_init - t0, "first_task_s": t_task - t_init, "shutdown_s": t_end - t_task,
                  "total_s": t_end - t0}))
"""

THROUGH_DAGSTER = """
import json, time
import dagster as dg
import ray
from resources import RayResource

@dg.asset
def one_ray_task(ray_cluster: RayResource) -> int:
    return ray.get(ray.remote(lambda: 1).remote())

t0 = time.perf_counter()
result = dg.materialize([one_ray_task], resources={"ray_cluster": RayResource(num_cpus=2)},
                        instance=dg.DagsterInstance.ephemeral())
assert result.success
print(json.dumps({"total_s": time.perf_counter() - t0}))
"""


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
        RAY_USAGE_STATS_ENABLED="0",
        # A single-node cluster on loopback, as in the tests.
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    )
    return env


def _sample(script: str, env: dict[str, str]) -> dict[str, float]:
    wall0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    wall = time.perf_counter() - wall0
    if proc.returncode != 0:
        raise RuntimeError(f"sample failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    return result


def _summary(samples: list[dict[str, float]]) -> dict:
    keys = samples[0].keys()
    return {"samples": samples, "median": {k: statistics.median(s[k] for s in samples) for k in keys}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-dagster", action="store_true", help="skip the RayResource-through-Dagster samples")
    args = parser.parse_args()

    env = _base_env()
    token_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    load_before = os.getloadavg()
    results: dict = {"runs": args.runs}
    # Local Rays first, with no head running, so they do not compete with it.
    results["local"] = _summary([_sample(RAY_ONLY, token_env) for _ in range(args.runs)])
    if not args.no_dagster:
        results["dagster_local"] = _summary([_sample(THROUGH_DAGSTER, token_env) for _ in range(args.runs)])
    t0 = time.perf_counter()
    with running_ray_head(num_cpus=2) as head:
        head_s = results["head_start_s"] = time.perf_counter() - t0
        results["join"] = _summary([_sample(RAY_ONLY, head.client_env) for _ in range(args.runs)])
        if not args.no_dagster:
            results["dagster_join"] = _summary([_sample(THROUGH_DAGSTER, head.client_env) for _ in range(args.runs)])
    results["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ray": __import__("ray").__version__,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))

    print(f"\nRay start-up per step, median of {args.runs} fresh processes (seconds)\n")
    print("| how the step gets Ray | ray.init | first task | shutdown | total | process wall |")
    print("|---|---|---|---|---|---|")
    for key, label in (("local", "starts its own local Ray"), ("join", "joins the running head")):
        m = results[key]["median"]
        print(
            f"| {label} | {m['init_s']:.2f} | {m['first_task_s']:.2f} | {m['shutdown_s']:.2f} | "
            f"{m['total_s']:.2f} | {m['process_wall_s']:.2f} |"
        )
    if not args.no_dagster:
        print("\n| RayResource through `dg.materialize` (one Ray task) | materialize | process wall |")
        print("|---|---|---|")
        for key, label in (
            ("dagster_local", "no RAY_ADDRESS (local Ray per step)"),
            ("dagster_join", "RAY_ADDRESS set (joins the head)"),
        ):
            m = results[key]["median"]
            print(f"| {label} | {m['total_s']:.2f} | {m['process_wall_s']:.2f} |")
    saved = results["local"]["median"]["total_s"] - results["join"]["median"]["total_s"]
    print(
        f"\nHead start (once): {head_s:.2f} s. Saved per step by joining: {saved:.2f} s. "
        f"Load average before/after: {load_before[0]:.1f} / {results['machine']['loadavg_after'][0]:.1f}"
    )
    print(f"Written: {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
