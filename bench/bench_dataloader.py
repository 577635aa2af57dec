"""DataLoader throughput of LanceClipDataset (seek to the keyframe before the clip) vs decoding each
whole video and picking the same frames, with the same loader settings and the same clips.

Baselines: `full_decode` decodes every frame with the same codec threading as the seek path (one
thread for these streams); `full_decode_frame_threads` is decode.decode_frames, which enables codec
frame threads and so also uses the second core when num_workers=0.

The table is built once into --work (reused when present): ~30 videos of 10 s, generated at 640x360
with moving texture (so they cost what real footage costs to decode, not a flat gradient) and run
through the project's own transcode (360p H.264, veryfast, keyframe every 1 s), or, when
KINETICS_REAL_VIDEOS_DIR is set and --source real/auto, the real clips transcoded the same way and
repeated up to --videos rows.

Each configuration runs in a fresh process so its peak RSS (main process; largest worker) is its own.
Throughput counts every clip of one epoch (clips_per_video clips per video, random starts) from the
iterator's creation; time to first batch includes worker start-up.

Run:  uv run python bench/bench_dataloader.py [--videos 30] [--clips-per-video 2] [--batch 8]
      [--json bench/results/dataloader.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import torch

from kinetics_assets.media.decode import decode_clip, decode_frames, frame_timestamps, open_video, rgb_converter
from kinetics_assets.media.sampling import ClipSampling
from kinetics_assets.readers.table_clips import item_rng
from kinetics_assets.readers.torch_dataset import LanceClipDataset, clip_loader

WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 25, 10.0
# seek: LanceClipDataset. full_decode: decode every frame, same codec threading as seek (one thread
# for these streams). full_decode_frame_threads: decode.decode_frames, which turns on codec frame
# threads (uses both cores even with num_workers=0).
READERS = ("seek", "full_decode", "full_decode_frame_threads")


# --------------------------------------------------------------------------------------------------
# The table


def textured_clip(path: Path, seed: int) -> Path:
    """10 s of a scrolling, slowly changing noise texture with a moving block: real-ish decode cost."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8)
    # Blur a little so it is texture, not pure noise (which no real video is).
    base = (
        (base.astype(np.uint16) + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, (1, 1), (0, 1))) // 4
    ).astype(np.uint8)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(int(SECONDS * FPS)):
            dy, dx = (i * 2) % HEIGHT, (i * 3) % WIDTH
            img = base[dy : dy + HEIGHT, dx : dx + WIDTH].copy()
            x = (i * 5) % (WIDTH - 80)
            img[100:180, x : x + 80] = (i * 7) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def build_table(uri: str, work: Path, videos: int, source: str) -> dict:
    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.steps.transcode_clip import ClipJob, process_clip
    from kinetics_assets.table import commit_shard, write_shard_fragments

    real_dir = os.environ.get("KINETICS_REAL_VIDEOS_DIR")
    use_real = source == "real" or (source == "auto" and real_dir)
    if source == "real" and not real_dir:
        raise SystemExit("--source real needs KINETICS_REAL_VIDEOS_DIR")
    config = TranscodeConfig()
    sources: list[tuple[str, bytes]] = []
    if use_real:
        sources.extend(
            (path.name, path.read_bytes()) for path in sorted(Path(real_dir).iterdir()) if path.suffix.lower() != ".md"
        )
    else:
        gen = work / "generated"
        gen.mkdir(parents=True, exist_ok=True)
        for i in range(videos):
            print(f"generating clip {i + 1}/{videos}", file=sys.stderr, flush=True)
            sources.append((f"gen{i}", textured_clip(gen / f"gen{i}.mp4", i).read_bytes()))
    transcoded = []
    for name, data in sources:
        job = ClipJob(
            name,
            "bench",
            "custom",
            name,
            "file:///" + name,
            "label" + str(len(transcoded) % 5),
            "val",
            None,
            None,
            None,
        )
        row = process_clip(job, data, config)
        if row.status == "ok" and (row.frames or 0) >= 16:
            transcoded.append(row)
        print(f"transcoded {name}: {row.status}", file=sys.stderr, flush=True)
    rows = [dataclasses.replace(transcoded[i % len(transcoded)], video_id=f"v{i:03d}") for i in range(videos)]
    commit_shard(uri, "bench", write_shard_fragments(rows, uri))
    return {
        "source": "real" if use_real else "generated",
        "videos": len(rows),
        "distinct_videos": len(transcoded),
        "mean_frames": float(np.mean([r["frames"] for r in rows])),
        "mean_bytes": float(np.mean([r["bytes"] for r in rows])),
        "sizes": sorted({f"{r['width']}x{r['height']}" for r in rows}),
    }


# --------------------------------------------------------------------------------------------------
# One configuration (run in its own process)


def decode_whole(data: bytes, indices: np.ndarray, *, frame_threads: bool) -> tuple[np.ndarray, np.ndarray]:
    if frame_threads:
        return decode_frames(data, indices, threads=0)  # the repository's full decode, codec-chosen threads
    wanted = set(indices.tolist())
    picked: dict[int, np.ndarray] = {}
    times: dict[int, float] = {}
    to_rgb = rgb_converter()  # the same conversion as the seek path
    with open_video(data) as container:  # same codec threading as the seek path
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                picked[i] = to_rgb(frame)
                times[i] = float(frame.time)
    return np.stack([picked[i] for i in indices.tolist()]), np.array([times[i] for i in indices.tolist()])


class FullDecodeClips(LanceClipDataset):
    """Baseline: the same clips, found by decoding the whole video and keeping those frames."""

    frame_threads = False

    def _item(self, index: int) -> dict:
        slot, clip = divmod(index, self.sampling.clips_per_video)
        entry = self.index.row(slot)
        data = self._dataset().take_blobs("video", indices=[entry.position])[0].readall()
        indices = self.sampling.indices(frame_timestamps(data), rng=item_rng(self.seed, self.epoch, index), clip=clip)
        frames, times = decode_whole(data, indices, frame_threads=self.frame_threads)
        return {
            "video": torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),
            "label": int(entry.label_index),
            "video_id": entry.video_id,
            "clip": clip,
            "timestamps": torch.from_numpy(times),
            "frame_indices": torch.from_numpy(indices),
        }


class FullDecodeThreadedClips(FullDecodeClips):
    frame_threads = True


def run_one(cfg: dict) -> dict:
    sampling = ClipSampling(num_frames=16, stride=cfg["stride"], start="random", clips_per_video=cfg["clips_per_video"])
    cls = {
        "seek": LanceClipDataset,
        "full_decode": FullDecodeClips,
        "full_decode_frame_threads": FullDecodeThreadedClips,
    }[cfg["reader"]]
    ds = cls(cfg["uri"], sampling=sampling, with_depth=False, seed=1)
    ds.set_epoch(3)
    # clip_loader: workers from a forkserver (Lance is not fork-safe); start-up counts in the first batch.
    loader = clip_loader(
        ds,
        batch_size=cfg["batch"],
        shuffle=True,
        num_workers=cfg["workers"],
        generator=torch.Generator().manual_seed(0),
    )
    started = time.perf_counter()
    first = None
    clips = 0
    checksum = 0
    for batch in loader:
        if first is None:
            first = time.perf_counter() - started
        clips += len(batch["video_id"])
        checksum += int(batch["frame_indices"].sum())
    total = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report the parent's peak.
    self_rss = _vm_hwm_kib()
    # Largest worker; forked workers count the pages they share with the main process too.
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        **{k: cfg[k] for k in ("reader", "workers", "stride", "batch", "clips_per_video")},
        "clips": clips,
        "seconds": total,
        "clips_per_s": clips / total,
        "first_batch_s": first,
        "steady_clips_per_s": (clips - cfg["batch"]) / (total - first) if clips > cfg["batch"] else None,
        "peak_rss_main_kib": self_rss,
        "peak_rss_worker_kib": child_rss if cfg["workers"] else None,
        "frame_index_checksum": checksum,
    }


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def same_pixels(uri: str, n: int = 4) -> bool:
    """Sanity: the seek path and a full decode give identical frames for the same clips."""
    from kinetics_assets.table import open_table

    ds = open_table(uri)
    rng = np.random.default_rng(0)
    for position in range(min(n, ds.count_rows())):
        data = ds.take_blobs("video", indices=[position])[0].readall()
        full, _ = decode_frames(data)
        indices = ClipSampling(16, stride=2).indices(np.arange(len(full)) / FPS, rng=rng)
        frames, _ = decode_clip(data, indices)
        if not np.array_equal(frames, full[indices]):
            return False
    return True


def by_key_of(results: list[dict]) -> dict:
    return {(r["stride"], r["workers"], r["reader"]): r for r in results}


# --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--clips-per-video", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--source", choices=["auto", "generated", "real"], default="auto")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_dataloader", help="table cache folder"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--readers", nargs="+", choices=READERS, default=list(READERS))
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        print("RESULT " + json.dumps(run_one(json.loads(args.run_one))), flush=True)
        return

    args.work.mkdir(parents=True, exist_ok=True)
    uri = str(args.work / f"table_{args.source}_{args.videos}.lance")
    info_path = args.work / f"table_{args.source}_{args.videos}.json"
    if not info_path.exists():
        table = build_table(uri, args.work, args.videos, args.source)
        info_path.write_text(json.dumps(table))
    table = json.loads(info_path.read_text())
    identical = same_pixels(uri)
    load_before = os.getloadavg()
    results = []
    for stride in args.strides:
        for workers in args.workers:
            for reader in args.readers:
                cfg = {
                    "uri": uri,
                    "reader": reader,
                    "workers": workers,
                    "stride": stride,
                    "batch": args.batch,
                    "clips_per_video": args.clips_per_video,
                }
                print(f"running {reader} workers={workers} stride={stride}", file=sys.stderr, flush=True)
                proc = subprocess.run(
                    [sys.executable, __file__, "--run-one", json.dumps(cfg)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode or not lines:
                    raise SystemExit(f"configuration {cfg} failed:\n{proc.stderr[-3000:]}")
                results.append(json.loads(lines[-1][len("RESULT ") :]))
    load_after = os.getloadavg()
    same_clips = all(
        r["frame_index_checksum"] == by_key_of(results)[(r["stride"], r["workers"], "seek")]["frame_index_checksum"]
        for r in results
    )

    lines = [
        (
            f"Table: {table['videos']} videos ({table['source']}, {table['distinct_videos']} distinct, "
            f"{', '.join(table['sizes'])}, ~{table['mean_frames']:.0f} frames, ~{table['mean_bytes'] / 1e6:.2f} MB "
            f"each). {args.clips_per_video} random 16-frame clips per video per epoch, batch {args.batch}, shuffle. "
            f"{os.cpu_count()} CPU cores; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after. "
            f"Seek path pixels identical to a full decode: {identical}; both readers served the same clips: "
            f"{same_clips}."
        ),
        "",
        "| stride | workers | reader | clips/s | steady clips/s | first batch s | seek speed-up vs this | peak RSS main MiB | peak RSS worker MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = by_key_of(results)
    for r in results:
        seek = by_key[(r["stride"], r["workers"], "seek")]
        ratio = seek["clips_per_s"] / r["clips_per_s"]
        worker = f"{r['peak_rss_worker_kib'] / 1024:.0f}" if r["peak_rss_worker_kib"] else "-"
        steady = f"{r['steady_clips_per_s']:.1f}" if r["steady_clips_per_s"] else "-"
        lines.append(
            f"| {r['stride']} | {r['workers']} | {r['reader']} | {r['clips_per_s']:.1f} | {steady} | "
            f"{r['first_batch_s']:.2f} | {ratio:.2f}x | {r['peak_rss_main_kib'] / 1024:.0f} | {worker} |"
        )
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "cpu_count": os.cpu_count(),
                    "loadavg_before": load_before,
                    "loadavg_after": load_after,
                    "table": table,
                    "seek_pixels_identical_to_full_decode": identical,
                    "same_clips_in_both_readers": same_clips,
                    "runs": results,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
