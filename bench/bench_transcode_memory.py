"""Memory of the transcoded_videos step does not grow with the shard: peak RSS at ~50 vs ~500 clips.

Small generated clips (1 s 160x120, a few distinct ones reused under different names) are packed into
two shards. Each shard runs the whole step (`transcode_step`, default RayTranscodeOptions) in a fresh
Python process with its own local Ray, which reports:
- the driver's peak RSS (getrusage RUSAGE_SELF ru_maxrss) and its RSS just before the step;
- the Ray workers' peak RSS: every 0.2 s the driver's descendant processes are listed from /proc and
  each worker's (command line `ray::...`) VmRSS sampled; at the end each live worker's VmHWM (the kernel's
  own high-water mark) is read too; the larger figure per worker is kept. RssAnon (private memory) is
  sampled as well: a worker's RSS also counts the pages of Ray's shared object store it has touched,
  which grows with the number of objects it has read until the store (512 MiB here) wraps around.
Target: peak RSS of the 500-clip run within 10% of the 50-clip run (driver and workers).

    uv run python bench/bench_transcode_memory.py [--sizes 50 500] [--json bench/results/transcode_memory.json]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs the step once in a fresh interpreter and prints one JSON line with its measurements.
_CHILD = r"""
import json, os, resource, sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
import ray
from kinetics_assets.distributed.transcode import RayTranscodeExecutor, RayTranscodeOptions
from kinetics_assets.ingest.shards import Shard
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.steps.transcode import transcode_step

archive, uri = Path(sys.argv[1]), sys.argv[2]

def status_kib(pid, field):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None

def descendants(root):
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found

def workers():
    pids = []
    for pid in descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        # Ray renames its workers' command line to `ray::<task or IDLE>`; a worker started under
        # a wrapper (uv) keeps `default_worker.py` in the wrapper's line, which is not the worker.
        program = cmd.split(b"\0", 1)[0]
        if program.startswith(b"ray::") or (b"default_worker.py" in cmd and b"python" in program):
            pids.append(pid)
    return pids

peaks, private, stop = {}, {}, threading.Event()
def sample():
    while not stop.is_set():
        for pid in workers():
            rss = status_kib(pid, "VmRSS")
            if rss:
                peaks[pid] = max(peaks.get(pid, 0), rss)
            anon = status_kib(pid, "RssAnon")
            if anon:
                private[pid] = max(private.get(pid, 0), anon)
        stop.wait(0.2)

ray.init(num_cpus=2, include_dashboard=False, object_store_memory=512 * 1024 * 1024, namespace="bench_mem")
shard = Shard("mem", "archive", ("http://127.0.0.1:1/mem.tar.gz",), "k400", "mem")
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
rss_before = status_kib(os.getpid(), "VmRSS")
started = time.perf_counter()
result = transcode_step(shard, archive, lance_uri=uri, storage_options=None, annotations={},
                        config=TranscodeConfig(), executor=RayTranscodeExecutor(options=RayTranscodeOptions()),
                        log=lambda _: None)
seconds = time.perf_counter() - started
for pid in workers():
    hwm = status_kib(pid, "VmHWM")
    if hwm:
        peaks[pid] = max(peaks.get(pid, 0), hwm)
stop.set()
sampler.join()
driver_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ray.shutdown()
print(json.dumps({
    "clips": result.processed, "ok": result.ok, "seconds": seconds,
    "checks_passed": all(v.passed for v in result.checks.values()),
    "driver_rss_before_step_kib": rss_before, "driver_peak_rss_kib": driver_peak,
    "workers": len(peaks), "worker_peak_rss_kib": max(peaks.values()) if peaks else None,
    "worker_peaks_kib": sorted(peaks.values(), reverse=True),
    "worker_peak_private_kib": max(private.values()) if private else None,
    "worker_private_peaks_kib": sorted(private.values(), reverse=True),
}))
"""


def _distinct_clips(work: Path, count: int) -> list[bytes]:
    from kinetics_assets.ops.sample import make_clip

    sizes = ((160, 120, False), (160, 120, True), (128, 96, False), (160, 90, True))
    clips = []
    for i in range(count):
        width, height, audio = sizes[i % len(sizes)]
        path = make_clip(work / f"small{i}.mp4", width=width, height=height, fps=25, seconds=1.0, audio=audio)
        clips.append(path.read_bytes())
    return clips


def _pack(archive: Path, clips: list[bytes], n_members: int) -> None:
    rng = random.Random(n_members)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(n_members):
            start = rng.randrange(0, 300)
            name = f"{''.join(rng.choice(alphabet) for _ in range(11))}_{start:06d}_{start + 10:06d}.mp4"
            data = clips[i % len(clips)]
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--distinct", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_transcode_mem_") as tmp:
        work = Path(tmp)
        clips = _distinct_clips(work, args.distinct)
        for n in args.sizes:
            archive = work / f"mem_{n}.tar.gz"
            _pack(archive, clips, n)
            load = float(Path("/proc/loadavg").read_text().split()[0])
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, str(archive), str(work / f"mem_{n}.lance"), str(REPO)],
                check=False,
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            if proc.returncode != 0:
                sys.exit(f"bench_transcode_memory: the {n}-clip run failed:\n{proc.stderr[-3000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            run.update(members=n, archive_bytes=archive.stat().st_size, load_at_start=load)
            runs.append(run)
            print(json.dumps(run), flush=True)
    small, large = runs[0], runs[-1]
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": runs,
        "driver_peak_ratio": large["driver_peak_rss_kib"] / small["driver_peak_rss_kib"],
        "worker_peak_ratio": (large["worker_peak_rss_kib"] / small["worker_peak_rss_kib"])
        if small["worker_peak_rss_kib"] and large["worker_peak_rss_kib"]
        else None,
        "worker_private_peak_ratio": large["worker_peak_private_kib"] / small["worker_peak_private_kib"]
        if small["worker_peak_private_kib"] and large["worker_peak_private_kib"]
        else None,
    }
    print(
        f"driver peak RSS {small['members']} -> {large['members']} clips: ratio {report['driver_peak_ratio']:.3f}; "
        f"worker peak RSS ratio {report['worker_peak_ratio']:.3f}, worker peak private (RssAnon) ratio "
        f"{report['worker_private_peak_ratio']:.3f} (target <= 1.10)",
        flush=True,
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
