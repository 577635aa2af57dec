"""Depth decode + encode jobs run side by side on every core, with the codecs' own thread choice
(`threads=0`: FFmpeg/x264 start about one thread per core, as the depth tasks did) against one
thread per job (`threads=1`, the tasks' default now that a task's codec threads follow the one CPU
it reserves).

One job is what a depth video costs the CPU tasks of the depth step: decode every frame of a 360p
H.264 clip to RGB (`decode.decode_frames`), then encode that many frames of float depth as a 10-bit
gray H.264 video (`depth_codec.encode_depth`, the default encoding). `--workers` processes (one per
core, as Ray runs one 1-CPU task per core) take `--jobs` jobs from a queue. Both settings run in the
same invocation, alternating round by round, so background load hits both alike.

Reported per setting: wall seconds for all jobs, CPU seconds (user + system, all threads of the
workers), and jobs per wall second; medians over the rounds.

Run:  uv run python bench/bench_codec_threads.py [--jobs 8] [--workers 2] [--rounds 3] [--seconds 4]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinetics_assets.media.decode import decode_frames
from kinetics_assets.media.depth_codec import DepthEncoding, encode_depth

WIDTH, HEIGHT, FPS = 640, 360, 25


def make_clip(seconds: float) -> bytes:
    """A 360p H.264 clip with moving texture, so decoding costs what real footage costs."""
    frames = round(seconds * FPS)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (HEIGHT, WIDTH * 2, 3), dtype=np.uint8)
    sink = io.BytesIO()
    with av.open(sink, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(FPS)}
        for i in range(frames):
            shift = (4 * i) % WIDTH
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, shift : shift + WIDTH]), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return sink.getvalue()


def one_job(clip: bytes, threads: int) -> tuple[float, int]:
    """Decode the clip, encode depth of its size and length: the process's CPU seconds (all threads)
    and involuntary context switches (a thread preempted because another wanted the core) it took."""
    cpu, switches = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    frames, times = decode_frames(clip, threads=threads)
    gray = frames.mean(axis=3, dtype=np.float32) / 255.0  # stands in for the model's depth
    encode_depth(gray, times - times[0], DepthEncoding(threads=threads))
    return time.process_time() - cpu, resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - switches


_CLIP = b""


def _init(clip: bytes) -> None:
    global _CLIP  # noqa: PLW0603 - each worker process keeps its own copy of the clip
    _CLIP = clip


def _job(threads: int) -> tuple[float, int]:
    return one_job(_CLIP, threads)


def run_round(pool: mp.pool.Pool, jobs: int, threads: int) -> tuple[float, float, int]:
    """(wall s, CPU s, involuntary context switches) of `jobs` jobs through the pool."""
    start = time.perf_counter()
    done = pool.map(_job, [threads] * jobs, chunksize=1)
    return time.perf_counter() - start, sum(d[0] for d in done), sum(d[1] for d in done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the clip of each job")
    args = parser.parse_args()

    clip = make_clip(args.seconds)
    settings = {"threads=0 (codec's choice, before)": 0, "threads=1 (one per reserved CPU, now)": 1}
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in settings}
    load_before = os.getloadavg()
    with mp.get_context("spawn").Pool(args.workers, initializer=_init, initargs=(clip,)) as pool:
        pool.map(_job, [1] * args.workers, chunksize=1)  # warm up: imports and first codec open
        for _ in range(args.rounds):
            for name, threads in settings.items():
                results[name].append(run_round(pool, args.jobs, threads))
    load_after = os.getloadavg()

    print(
        f"{args.jobs} jobs ({args.seconds:g} s of {WIDTH}x{HEIGHT} at {FPS} fps: decode to RGB + depth encode), "
        f"{args.workers} worker processes on {os.cpu_count()} cores, {args.rounds} rounds, medians; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print("| setting | wall s | CPU s | jobs/s | CPU s per job | involuntary switches per job | rounds' wall s |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        wall = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        switches = statistics.median(r[2] for r in rows) / args.jobs
        walls = ", ".join(f"{r[0]:.1f}" for r in rows)
        print(
            f"| {name} | {wall:.2f} | {cpu:.2f} | {args.jobs / wall:.2f} | {cpu / args.jobs:.2f} | {switches:.0f} "
            f"| {walls} |"
        )


if __name__ == "__main__":
    main()
