"""transcoded_videos throughput: the whole step on Ray vs a single-process loop vs the `ffmpeg` CLI.

Two shards are built in a temp dir: the real clips (folder from KINETICS_REAL_VIDEOS_DIR), each 5 times
under different names in a shuffled order, and a larger generated one (default 40 clips of 10 s 1280x720 30 fps: a textured, panning picture so the encoder has
real work; a few distinct clips reused under different names, which costs the same to transcode).
For each shard:

1. the full step (`transcode_step`: archive streaming, Ray tasks, fragment writes, commit and the
   decode check) on a local Ray started beforehand (start-up time reported separately), 3 times;
   the median run counts. The first run on the real shard also starts the Ray workers ("cold",
   not counted); every other run finds them warm.
2. a single-process loop over the same shard: read the archive, call `transcode()` on each clip, same
   settings (the step's work minus Ray and Lance). The transcode() calls alone are timed too.
3. the `ffmpeg` CLI (Debian's package, for the benchmark only), one process per clip, `-threads 1`,
   libx264 at the same preset/crf/keyframe interval/output size, AAC, faststart; two at a time.
   CPU from getrusage(RUSAGE_CHILDREN).

Then PSNR of each distinct output (ours and ffmpeg's) against the source scaled to the same size, and
a breakdown of the step (archive read, Ray transcode + fragment writes, commit, decode check).

    KINETICS_REAL_VIDEOS_DIR=/path/to/real_videos uv run python bench/bench_transcode.py \
        [--real-copies 5] [--repeats 3] [--gen-clips 40] [--gen-seconds 10] [--gen-size 1280x720] \
        [--json bench/results/transcode.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import av  # noqa: E402
import numpy as np  # noqa: E402

from kinetics_assets.distributed.transcode import RayTranscodeExecutor, RayTranscodeOptions, RayTranscodeWindow  # noqa: E402
from kinetics_assets.ingest.archive import iter_video_members  # noqa: E402
from kinetics_assets.ingest.shards import Shard  # noqa: E402
from kinetics_assets.media.transcode import TranscodeConfig, transcode  # noqa: E402
from kinetics_assets.steps.transcode import transcode_step  # noqa: E402
from kinetics_assets.steps.transcode_checks import check_shard_rows  # noqa: E402
from kinetics_assets.steps.transcode_clip import make_job  # noqa: E402
from kinetics_assets.table import open_table  # noqa: E402

CONFIG = TranscodeConfig()  # the production settings: 360p, veryfast, crf 23, 1 s GOP, 1 thread
OPTIONS = RayTranscodeOptions()
CORES = 2


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _wait_quiet(limit: float = 1.0, max_wait_s: float = 45.0) -> float:
    """Wait (a little) for other work on the machine to finish; returns the 1-minute load at start."""
    deadline = time.monotonic() + max_wait_s
    while _load() > limit and time.monotonic() < deadline:
        time.sleep(5)
    return _load()


# -- shards ----------------------------------------------------------------------------------------


def _textured_clip(path: Path, *, width: int, height: int, fps: int, seconds: float, seed: int) -> None:
    """A panning noise texture over a moving gradient: real motion and detail for the encoder."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(height // 4 + 8, width // 4 + 8, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((4, 4, 1), dtype=np.uint8))  # 4x4 blocks: detail, not pure noise
    _, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "18"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "stereo"
        for i in range(round(seconds * fps)):
            dx, dy = (i * 3) % 32, (i * 2) % 32
            patch = texture[dy : dy + height, dx : dx + width].astype(np.int16)
            shade = ((xs + i * 5) % width * 96 // width).astype(np.int16)[..., None]
            rgb = np.clip(patch // 2 + shade + 32, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(round(seconds * 44100)) / 44100.0
        tone = (0.2 * np.sin(2 * np.pi * (220 + seed * 40) * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = tone[start : start + 1024]
            aframe = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            aframe.sample_rate = 44100
            aframe.pts = start
            out.mux(audio.encode(aframe))
        out.mux(audio.encode(None))


def _member_name(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    start = rng.randrange(0, 300)
    return f"{''.join(rng.choice(alphabet) for _ in range(11))}_{start:06d}_{start + 10:06d}.mp4"


def _pack(archive: Path, clips: list[bytes], n_members: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(n_members):
            data = clips[i % len(clips)]
            info = tarfile.TarInfo(_member_name(rng))
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))


def build_real_shard(work: Path, real_dir: Path, copies: int) -> Path:
    """Each real clip `copies` times under different names, in a shuffled order: a shard of a size
    where, as in a real shard, the one clip that costs as much as the rest together does not leave
    a core idle at the end."""
    clips = [p.read_bytes() for p in sorted(real_dir.iterdir()) if p.is_file() and p.suffix.lower() != ".md"]
    order = [c for c in clips for _ in range(copies)]
    random.Random(2).shuffle(order)
    archive = work / "real.tar.gz"
    _pack(archive, order, len(order))
    return archive


def build_generated_shard(work: Path, *, n_clips: int, seconds: float, width: int, height: int, distinct: int) -> Path:
    clips = []
    for k in range(min(distinct, n_clips)):
        path = work / f"gen{k}.mp4"
        _textured_clip(path, width=width, height=height, fps=30, seconds=seconds, seed=k)
        clips.append(path.read_bytes())
    archive = work / "generated.tar.gz"
    _pack(archive, clips, n_clips, seed=1)
    return archive


def _shard(key: str, archive: Path) -> Shard:
    return Shard(key, "archive", (f"http://127.0.0.1:1/{archive.name}",), "k400", key)


# -- measurements ----------------------------------------------------------------------------------


def run_step(shard: Shard, archive: Path, uri: str) -> dict:
    started = time.perf_counter()
    result = transcode_step(
        shard,
        archive,
        lance_uri=uri,
        storage_options=None,
        annotations={},
        config=CONFIG,
        executor=RayTranscodeExecutor(options=OPTIONS),
        log=lambda _: None,
    )
    seconds = time.perf_counter() - started
    if not all(v.passed for v in result.checks.values()):
        raise RuntimeError(f"the shard's checks failed: {result.checks}")
    return {
        "clips": result.processed,
        "ok": result.ok,
        "failed": result.failed,
        "seconds": seconds,
        "clips_per_s": result.processed / seconds,
        "task_cpu_s_per_clip": result.cpu_seconds / result.processed,
        "bytes_out_per_clip": result.bytes_out / max(result.ok, 1),
        "bytes_in_per_clip": result.bytes_in / result.processed,
    }


def step_breakdown(shard: Shard, archive: Path, uri: str) -> dict:
    """Time the step's parts separately (same calls the step makes, in order)."""
    from kinetics_assets.table import commit_shard, ensure_table

    t0 = time.perf_counter()
    n = sum(1 for _ in iter_video_members(archive, label=shard.key))
    archive_s = time.perf_counter() - t0
    ensure_table(uri, None)
    ids: list[str] = []
    t0 = time.perf_counter()
    window = RayTranscodeWindow(uri=uri, storage_options=None, config=CONFIG, options=OPTIONS)
    window.open_shard(shard.key)
    finished = []
    for name, data in iter_video_members(archive, label=shard.key):
        job = make_job(name, shard=shard.key, release=shard.release, source_url=shard.url, annotations={})
        ids.append(job.video_id)
        finished += window.submit(shard.key, job, data)
    finished += window.close_shard(shard.key)
    finished += window.finish()
    (outcome,) = finished
    ray_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    commit = commit_shard(uri, shard.key, outcome.fragments, storage_options=None, properties={"step": "bench"})
    commit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    check_shard_rows(open_table(uri, None, version=commit.version), shard.key, ids, max_failure_rate=1.0)
    check_s = time.perf_counter() - t0
    return {
        "clips": n,
        "archive_read_s": archive_s,
        "ray_transcode_and_fragments_s": ray_s,
        "commit_s": commit_s,
        "decode_check_s": check_s,
    }


def single_process(archive: Path, key: str) -> tuple[dict, dict[str, object]]:
    """One process reads the shard's archive and transcodes each clip in turn: the same work as the
    step minus Ray and Lance. Timed as a whole and, separately, the transcode() calls alone."""
    outputs: dict[str, object] = {}
    transcode_s = transcode_cpu = 0.0
    t0 = time.perf_counter()
    for name, data in iter_video_members(archive, label=key):
        c, t = time.process_time(), time.perf_counter()
        outputs[name] = transcode(data, CONFIG, name=name)
        transcode_s += time.perf_counter() - t
        transcode_cpu += time.process_time() - c
    seconds = time.perf_counter() - t0
    n = len(outputs)
    return {
        "clips": n,
        "seconds": seconds,
        "clips_per_s": n / seconds,
        "transcode_only_seconds": transcode_s,
        "transcode_only_clips_per_s": n / transcode_s,
        "cpu_s_per_clip": transcode_cpu / n,
        "bytes_out_per_clip": sum(r.bytes for r in outputs.values()) / n,
    }, outputs


def _ffmpeg_cmd(src: Path, dst: Path, width: int, height: int, keyint: int) -> list[str]:
    return [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-threads",
        "1",
        "-filter_threads",
        "1",
        "-i",
        str(src),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-fps_mode",
        "passthrough",
        "-vf",
        f"scale={width}:{height}:flags=bilinear,setsar=1,format=yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        CONFIG.preset,
        "-crf",
        str(CONFIG.crf),
        "-g",
        str(keyint),
        "-keyint_min",
        str(keyint),
        "-threads",
        "1",
        "-c:a",
        "aac",
        "-b:a",
        str(CONFIG.audio_bitrate),
        "-movflags",
        "+faststart",
        str(dst),
    ]


def ffmpeg_cli(
    work: Path, clips: list[tuple[str, bytes]], outputs: dict, parallel: int = CORES
) -> tuple[dict, dict[str, Path]]:
    src_dir, out_dir = work / "ff_src", work / "ff_out"
    shutil.rmtree(src_dir, ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    src_dir.mkdir()
    out_dir.mkdir()
    jobs = []
    for i, (name, data) in enumerate(clips):
        src = src_dir / f"{i:04d}_{Path(name).name}"
        src.write_bytes(data)
        ours = outputs[name]
        jobs.append(
            (
                name,
                _ffmpeg_cmd(src, out_dir / f"{i:04d}.mp4", ours.width, ours.height, ours.keyframe_interval_frames),
                out_dir / f"{i:04d}.mp4",
                src,
            )
        )

    def run(job: tuple[str, list[str], Path, Path]) -> tuple[str, int, str]:
        proc = subprocess.run(job[1], check=False, capture_output=True, text=True)
        return job[0], proc.returncode, proc.stderr[-500:]

    cpu0, t0 = _cpu_children(), time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(run, jobs))
    seconds, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    failed = [(name, err) for name, rc, err in results if rc != 0]
    n = len(clips)
    out_paths = {name: out for name, _, out, _ in jobs}
    return {
        "clips": n,
        "failed": failed,
        "parallel": parallel,
        "seconds": seconds,
        "clips_per_s": n / seconds,
        "cpu_s_per_clip": cpu / n,
        "bytes_out_per_clip": sum(p.stat().st_size for p in out_paths.values() if p.exists()) / n,
    }, {name: src for name, _, _, src in jobs} | {f"out:{name}": out for name, _, out, _ in jobs}


_PSNR = re.compile(r"average:([0-9.]+|inf)")


def psnr(output: Path, source: Path, width: int, height: int) -> float | None:
    """Mean Y/U/V PSNR (ffmpeg's 'average') of output vs the source scaled (bicubic) to its size."""
    graph = (
        f"[1:v]scale={width}:{height}:flags=bicubic,setsar=1,format=yuv420p,setpts=PTS-STARTPTS[ref];"
        f"[0:v]setsar=1,setpts=PTS-STARTPTS[out];[out][ref]psnr"
    )
    proc = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-hide_banner",
            "-i",
            str(output),
            "-i",
            str(source),
            "-lavfi",
            graph,
            "-f",
            "null",
            "-",
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    match = _PSNR.findall(proc.stderr)
    return float(match[-1]) if match else None


def quality(work: Path, clips: list[tuple[str, bytes]], outputs: dict, ff_paths: dict) -> list[dict]:
    rows, seen = [], set()
    for name, data in clips:
        if data in seen:  # copies of one generated clip give the same figure
            continue
        seen.add(data)
        ours = outputs[name]
        ours_path = work / "ours.mp4"
        ours_path.write_bytes(ours.video)
        src = ff_paths[name]
        rows.append(
            {
                "clip": name,
                "source": f"{ours.source.codec} {ours.source.width}x{ours.source.height}",
                "output": f"{ours.width}x{ours.height}",
                "frames": ours.frames,
                "ours_bytes": ours.bytes,
                "ffmpeg_bytes": ff_paths[f"out:{name}"].stat().st_size,
                "ours_psnr": psnr(ours_path, src, ours.width, ours.height),
                "ffmpeg_psnr": psnr(ff_paths[f"out:{name}"], src, ours.width, ours.height),
            }
        )
    return rows


def bench_shard(label: str, key: str, archive: Path, work: Path, *, repeats_cold: bool, repeats: int) -> dict:
    shard = _shard(key, archive)
    clips = list(iter_video_members(archive, label=key))
    report: dict = {
        "shard": label,
        "clips": len(clips),
        "source_bytes_per_clip": sum(len(d) for _, d in clips) / len(clips),
    }
    report["load_before"] = _wait_quiet()
    if repeats_cold:
        report["pipeline_cold"] = run_step(shard, archive, str(work / f"{key}_cold.lance"))
        print(f"[{label}] pipeline (cold workers): {report['pipeline_cold']}", flush=True)
        _wait_quiet()
    runs = []
    for i in range(repeats):
        runs.append(run_step(shard, archive, str(work / f"{key}_{i}.lance")))
        print(f"[{label}] pipeline run {i + 1}: {runs[-1]}", flush=True)
        _wait_quiet()
    report["pipeline_runs"] = runs
    report["pipeline"] = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # the median run
    report["single_process"], outputs = single_process(archive, key)
    print(f"[{label}] single process: {report['single_process']}", flush=True)
    _wait_quiet()
    report["ffmpeg"], ff_paths = ffmpeg_cli(work, clips, outputs)
    print(f"[{label}] ffmpeg: {report['ffmpeg']}", flush=True)
    report["load_after"] = _load()
    report["breakdown"] = step_breakdown(shard, archive, str(work / f"{key}_parts.lance"))
    print(f"[{label}] breakdown: {report['breakdown']}", flush=True)
    report["quality"] = quality(work, clips, outputs, ff_paths)
    for row in report["quality"]:
        print(f"[{label}] quality: {row}", flush=True)
    single = report["single_process"]["clips_per_s"]
    report["pipeline_vs_cores_x_single"] = report["pipeline"]["clips_per_s"] / (CORES * single)
    report["pipeline_vs_cores_x_transcode_only"] = report["pipeline"]["clips_per_s"] / (
        CORES * report["single_process"]["transcode_only_clips_per_s"]
    )
    report["engine_cpu_vs_ffmpeg_cpu"] = report["single_process"]["cpu_s_per_clip"] / report["ffmpeg"]["cpu_s_per_clip"]
    print(
        f"[{label}] ratio pipeline/(cores x single) = {report['pipeline_vs_cores_x_single']:.3f} (target >= 0.9); "
        f"against the transcode() calls alone {report['pipeline_vs_cores_x_transcode_only']:.3f}; "
        f"engine CPU / ffmpeg CPU = {report['engine_cpu_vs_ffmpeg_cpu']:.3f} (target 0.85..1.15)",
        flush=True,
    )
    return report


def _machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    ff = subprocess.run(["ffmpeg", "-version"], check=False, capture_output=True, text=True).stdout.splitlines()[0]
    import lance
    import ray

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model.group(1) if model else "?",
        "mem_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "python": platform.python_version(),
        "pyav": av.__version__,
        "ffmpeg_in_pyav": av.library_versions.get("libavcodec"),
        "ffmpeg_cli": ff,
        "ray": ray.__version__,
        "lance": lance.__version__,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gen-clips", type=int, default=40)
    parser.add_argument("--gen-distinct", type=int, default=5)
    parser.add_argument("--gen-seconds", type=float, default=10.0)
    parser.add_argument("--gen-size", default="1280x720")
    parser.add_argument("--real-copies", type=int, default=5, help="times each real clip is in the real shard")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs of the step per shard (the median counts)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit(
            "bench_transcode: no `ffmpeg` binary on PATH; install Debian's package "
            "(`apt-get install -y ffmpeg`) to run the CLI comparison."
        )
    real_dir = os.environ.get("KINETICS_REAL_VIDEOS_DIR")
    if not real_dir or not Path(real_dir).is_dir():
        print("KINETICS_REAL_VIDEOS_DIR not set (or not a folder): the real-clip shard is skipped", flush=True)
        real_dir = None
    width, height = (int(v) for v in args.gen_size.lower().split("x"))

    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    report: dict = {"machine": _machine(), "config": CONFIG.as_dict(), "options": OPTIONS.__dict__, "shards": []}
    with tempfile.TemporaryDirectory(prefix="bench_transcode_") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        real_archive = build_real_shard(work, Path(real_dir), args.real_copies) if real_dir else None
        gen_archive = build_generated_shard(
            work,
            n_clips=args.gen_clips,
            seconds=args.gen_seconds,
            width=width,
            height=height,
            distinct=args.gen_distinct,
        )
        report["build_shards_s"] = time.perf_counter() - t0
        print(f"shards built in {report['build_shards_s']:.1f} s", flush=True)
        _wait_quiet()
        t0 = time.perf_counter()
        ray.init(num_cpus=CORES, include_dashboard=False, object_store_memory=512 * 1024 * 1024, namespace="bench")
        report["ray_init_s"] = time.perf_counter() - t0
        print(f"ray.init: {report['ray_init_s']:.1f} s", flush=True)
        try:
            if real_archive is not None:
                report["shards"].append(
                    bench_shard(
                        f"real clips x {args.real_copies}",
                        "real",
                        real_archive,
                        work,
                        repeats_cold=True,
                        repeats=args.repeats,
                    )
                )
            label = f"generated {args.gen_clips} x {args.gen_seconds:g} s {width}x{height} 30 fps"
            report["shards"].append(
                bench_shard(
                    label, "generated", gen_archive, work, repeats_cold=real_archive is None, repeats=args.repeats
                )
            )
        finally:
            ray.shutdown()
    text = json.dumps(report, indent=2, default=str)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
