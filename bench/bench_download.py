"""Download throughput: kinetics_assets.ingest.download.download() vs a plain single-stream `curl -s -o`.

download() also hashes (sha256) every byte, so `curl -s URL | tee FILE | sha256sum` is measured as
a second reference doing the same work with standard tools.

A file of random bytes is served on loopback by the test harness server, run in its own process so
the server does not share a GIL with the downloader. Each download() run happens in a fresh Python
process that reports its own wall time and peak RSS (resource.getrusage), so the numbers do not
include generating the file or importing modules. CPU seconds (user + system, all threads) are
reported too: on a shared machine they vary less than wall time. curl and download() runs alternate to spread any drift evenly,
and every run starts after an untimed `sync`, so no run waits on another's writeback.

    uv run python bench/bench_download.py [--size-mib 512] [--runs 3] [--json bench/results/download.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from kinetics_assets.ingest.layout import part_meta_path, part_path, sidecar_path

REPO = Path(__file__).resolve().parent.parent

# Runs download() once in a fresh interpreter and prints a JSON line with its own measurements.
_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from kinetics_assets.ingest.download import DownloadConfig, download
url, dest, chunk = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
before = resource.getrusage(resource.RUSAGE_SELF)
started = time.perf_counter()
result = download(url, dest, config=DownloadConfig(chunk_bytes=chunk), label="bench")
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(json.dumps({"seconds": seconds, "cpu_s": cpu, "bytes": result.bytes, "sha256": result.sha256,
                  "peak_rss_kib": after.ru_maxrss}))
"""


def _write_random_file(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    block = 16 << 20
    with path.open("wb") as fh:
        remaining = size
        while remaining > 0:
            data = os.urandom(min(block, remaining))
            fh.write(data)
            hasher.update(data)
            remaining -= len(data)
    return hasher.hexdigest()


def _start_server(root: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.harness.http_server", str(root)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    base_url = proc.stdout.readline().strip()
    if not base_url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"benchmark server did not start (printed {base_url!r})")
    return proc, base_url


def _run_curl(url: str, dest: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `curl -s -o`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-o", str(dest), url], check=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _run_curl_sha256(url: str, dest: Path) -> tuple[float, float, str]:
    """The same work as download() with standard tools: fetch, write and hash in one pass."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        ["bash", "-c", 'set -o pipefail; curl -s "$1" | tee "$2" | sha256sum', "bench", url, str(dest)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, out.stdout.split()[0]


def _run_download(url: str, dest: Path, chunk_bytes: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, url, str(dest), str(chunk_bytes)],
        cwd=REPO, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _clean(dest: Path) -> None:
    """Remove the last run's output and flush the page cache to disk, untimed. Without the flush,
    download()'s fsync would also wait for the previous client's 512 MiB still being written back
    (a journal commit flushes every file's pending data), and the result would depend on run order."""
    for path in (dest, part_path(dest), part_meta_path(dest), sidecar_path(dest)):
        path.unlink(missing_ok=True)
    os.sync()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-mib", type=float, default=0.5, help="DownloadConfig.chunk_bytes in MiB")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        print("curl is not installed", file=sys.stderr)
        return 2

    size = args.size_mib << 20
    chunk_bytes = int(args.chunk_mib * (1 << 20))
    with tempfile.TemporaryDirectory(prefix="bench_download_") as tmp:
        tmp_path = Path(tmp)
        root = tmp_path / "served"
        root.mkdir()
        expected_sha = _write_random_file(root / "blob.bin", size)
        server, base_url = _start_server(root)
        url = f"{base_url}/blob.bin"
        curl_s: list[float] = []
        curl_cpu: list[float] = []
        piped_s: list[float] = []
        piped_cpu: list[float] = []
        ours: list[dict] = []
        load_before = os.getloadavg()
        try:
            dest = tmp_path / "out.bin"
            _run_curl(url, dest)  # warm-up: page cache and server code paths
            _clean(dest)
            for run in range(args.runs):
                seconds, cpu = _run_curl(url, dest)
                curl_s.append(seconds)
                curl_cpu.append(cpu)
                _clean(dest)
                seconds, cpu, digest = _run_curl_sha256(url, dest)
                if digest != expected_sha:
                    raise RuntimeError(f"run {run}: curl | tee | sha256sum saw different bytes")
                piped_s.append(seconds)
                piped_cpu.append(cpu)
                _clean(dest)
                result = _run_download(url, dest, chunk_bytes)
                if result["sha256"] != expected_sha or result["bytes"] != size:
                    raise RuntimeError(f"run {run}: downloaded file differs from the served one")
                ours.append(result)
                _clean(dest)
                print(
                    f"run {run + 1}: curl {size / curl_s[-1] / 1e6:8.1f} MB/s   "
                    f"curl|tee|sha256sum {size / piped_s[-1] / 1e6:8.1f} MB/s   "
                    f"download() {size / result['seconds'] / 1e6:8.1f} MB/s   "
                    f"peak RSS {result['peak_rss_kib'] / 1024:.0f} MiB   "
                    f"CPU s: curl {curl_cpu[-1]:.2f} piped {piped_cpu[-1]:.2f} download() {result['cpu_s']:.2f}",
                    flush=True,
                )
        finally:
            server.stdin.close()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()

    curl_mbps = [size / s / 1e6 for s in curl_s]
    ours_mbps = [size / r["seconds"] / 1e6 for r in ours]
    piped_mbps = [size / s / 1e6 for s in piped_s]
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "size_mib": args.size_mib,
        "chunk_bytes": chunk_bytes,
        "runs": args.runs,
        "curl_mb_per_s": curl_mbps,
        "download_mb_per_s": ours_mbps,
        "curl_median_mb_per_s": statistics.median(curl_mbps),
        "download_median_mb_per_s": statistics.median(ours_mbps),
        "ratio_median": statistics.median(ours_mbps) / statistics.median(curl_mbps),
        "download_peak_rss_mib": max(r["peak_rss_kib"] for r in ours) / 1024,
        "curl_sha256_mb_per_s": piped_mbps,
        "curl_sha256_median_mb_per_s": statistics.median(piped_mbps),
        "ratio_vs_curl_sha256_median": statistics.median(ours_mbps) / statistics.median(piped_mbps),
        "curl_cpu_s_median": statistics.median(curl_cpu),
        "curl_sha256_cpu_s_median": statistics.median(piped_cpu),
        "download_cpu_s_median": statistics.median(r["cpu_s"] for r in ours),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(summary, indent=1))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
