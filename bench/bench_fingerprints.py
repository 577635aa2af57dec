"""Near-duplicate detection by fingerprint: precision and recall on copies made from real clips,
with the thresholds chosen on one half of the sources and reported on the other; what the blocking
loses against comparing every pair; fingerprint and comparison cost.

Each source clip of at least `--min-seconds` is made into variants with the `ffmpeg` CLI: re-encoded
at CRF 35, scaled to half its width, cropped 10% (5% off each edge, the size kept), shifted 0.5 s
(its first half second cut), and a segment cut from its middle (40% of it, at least 2 s). A pair is
positive when both clips come from the same source (source-variant and variant-variant), negative
otherwise. The sources are split into two halves by name (alternating); every threshold pair
(max_bits, min_share) of a grid is scored on one half's pairs, and the best by F1 (ties: the
smaller max_bits, then the larger min_share) is reported on the other half, both ways round.

    uv run python bench/bench_fingerprints.py --clips <folder of clips> [--synthetic 20000] [--json out.json]

Needs Debian's `ffmpeg` (benchmark only).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kinetics_assets.dedup import Blocking, ClipHashes, fingerprint_pairs
from kinetics_assets.media.decode import decode_frames, frame_timestamps
from kinetics_assets.media.fingerprint import FLAT, FingerprintConfig, MatchConfig, align, fingerprint_frames
from kinetics_assets.media.sampling import FrameSampling

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".h264", ".h265", ".hevc"}
MAX_BITS = range(4, 25, 2)
MIN_SHARE = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
BLOCKINGS = [Blocking(tables=t, min_shared=m) for t in (1, 4, 8) for m in (1, 2)]


def _ffmpeg(src: Path, out: Path, *args: str) -> Path:
    """`src` through ffmpeg's `args` (after `-i`: a seek decodes from the start, since seeking the
    input lands mid-GOP on some of the clips and writes garbage), H.264 4:2:0 as the table stores it.
    """
    command = ["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), *args]
    subprocess.run([*command, "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def variants(src: Path, seconds: float, work: Path) -> dict[str, Path]:
    stem = work / src.stem
    segment = max(2.0, 0.4 * seconds)
    start = max(0.0, (seconds - segment) / 2)
    return {
        "crf35": _ffmpeg(src, stem.with_suffix(".crf35.mp4"), "-crf", "35"),
        "half_size": _ffmpeg(src, stem.with_suffix(".half.mp4"), "-vf", "scale=trunc(iw/4)*2:-2"),
        "crop10": _ffmpeg(src, stem.with_suffix(".crop.mp4"), "-vf", "crop=iw*0.9:ih*0.9,scale=trunc(iw/0.9/2)*2:-2"),
        "shift0.5": _ffmpeg(src, stem.with_suffix(".shift.mp4"), "-ss", "0.5"),
        "segment": _ffmpeg(src, stem.with_suffix(".segment.mp4"), "-ss", f"{start:.2f}", "-t", f"{segment:.2f}"),
    }


def fingerprint(path: Path, config: FingerprintConfig) -> tuple[np.ndarray, float]:
    """The clip's hashes (as the stage makes them) and the seconds it took."""
    started = time.process_time()
    data = path.read_bytes()
    indices = FrameSampling(policy="fps", fps=config.sample_fps).indices(frame_timestamps(data))
    frames, times = decode_frames(data, indices)
    hashes = np.asarray(fingerprint_frames(frames, times, config), dtype=np.uint64)
    return hashes, time.process_time() - started


def is_pair(a: np.ndarray, b: np.ndarray, match: MatchConfig) -> bool:
    found = align(a, b, max_bits=match.max_bits)
    shorter = min(int((a != FLAT).sum()), int((b != FLAT).sum()))
    return found is not None and found.is_duplicate(match, shorter=shorter)


def scores(items: list[dict], match: MatchConfig) -> dict[str, float]:
    tp = fp = fn = 0
    for x, y in itertools.combinations(items, 2):
        same, found = x["source"] == y["source"], is_pair(x["hashes"], y["hashes"], match)
        tp += same and found
        fp += (not same) and found
        fn += same and not found
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def choose(items: list[dict]) -> MatchConfig:
    """The grid's best (max_bits, min_share) by F1 on `items`; ties: smaller max_bits, then larger share."""
    graded = [
        (scores(items, m)["f1"], -m.max_bits, m.min_share, m)
        for m in (MatchConfig(max_bits=b, min_share=s) for b in MAX_BITS for s in MIN_SHARE)
    ]
    return max(graded, key=lambda g: g[:3])[3]


def blocking_loss(items: list[dict], match: MatchConfig, blocking: Blocking) -> dict[str, float]:
    """Pairs the blocked search finds (as near_duplicates does) against every pair aligned, and its
    end-to-end precision and recall against the truth.
    """
    clips = [ClipHashes(video_id=f"{i:03d}", hashes=it["hashes"].tolist(), fps=1.0) for i, it in enumerate(items)]
    blocked, work = fingerprint_pairs(clips, match=match, blocking=blocking)
    every = sum(is_pair(x["hashes"], y["hashes"], match) for x, y in itertools.combinations(items, 2))
    truth = sum(x["source"] == y["source"] for x, y in itertools.combinations(items, 2))
    right = sum(items[int(p.video_a)]["source"] == items[int(p.video_b)]["source"] for p in blocked)
    return {
        "exhaustive_pairs": every,
        "blocked_pairs": len(blocked),
        "candidates": work["candidates"],
        "precision": right / len(blocked) if blocked else 1.0,
        "recall": right / truth if truth else 1.0,
    }


def synthetic(n: int, match: MatchConfig, blocking: Blocking, seed: int = 0) -> dict[str, float]:
    """`n` random 10 s clips, a tenth with a copy whose seconds differ by 6 bits: the blocked search's
    time, candidates and recall of the planted copies, against the time aligning every pair would take.
    """
    rng = np.random.default_rng(seed)
    clips, planted = [], 0
    for i in range(n):
        hashes = rng.integers(1, 2**63, 10, dtype=np.uint64)
        clips.append(ClipHashes(video_id=f"s{i:07d}", hashes=hashes.tolist(), fps=1.0))
        if i % 10 == 0:
            flips = [np.uint64(sum(1 << int(b) for b in rng.choice(64, 6, replace=False))) for _ in hashes]
            clips.append(ClipHashes(video_id=f"c{i:07d}", hashes=(hashes ^ np.asarray(flips)).tolist(), fps=1.0))
            planted += 1
    started = time.perf_counter()
    pairs, work = fingerprint_pairs(clips, match=match, blocking=blocking)
    blocked_s = time.perf_counter() - started
    found = sum(p.video_a[1:] == p.video_b[1:] for p in pairs)
    sample = 2000
    started = time.perf_counter()
    for x, y in itertools.pairwise(clips[: sample + 1]):
        align(x.hashes, y.hashes, max_bits=match.max_bits)
    per_pair = (time.perf_counter() - started) / sample
    total_pairs = len(clips) * (len(clips) - 1) / 2
    return {
        "clips": len(clips),
        "planted": planted,
        "planted_found": found,
        "pairs": len(pairs),
        "candidates": work["candidates"],
        "blocked_s": round(blocked_s, 2),
        "exhaustive_estimate_s": round(per_pair * total_pairs, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, required=True, help="folder of source clips")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=FingerprintConfig.fps)
    parser.add_argument("--frames-per-hash", type=int, default=FingerprintConfig.frames_per_hash)
    parser.add_argument("--synthetic", type=int, default=0, help="also time the blocking on this many random clips")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = FingerprintConfig(fps=args.fps, frames_per_hash=args.frames_per_hash)

    sources = sorted(p for p in args.clips.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    items: list[dict] = []
    cpu_s = video_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            times = frame_timestamps(src.read_bytes())
            seconds = float(times[-1] - times[0]) if len(times) > 1 else 0.0
            if seconds < args.min_seconds:
                print(f"skipped {src.name}: {seconds:.1f} s")
                continue
            clips = {"source": src, **variants(src, seconds, Path(tmp))}
            for kind, path in clips.items():
                hashes, spent = fingerprint(path, config)
                cpu_s += spent
                video_s += len(hashes) / config.fps
                items.append({"source": src.name, "kind": kind, "hashes": hashes})
    names = sorted({it["source"] for it in items})
    halves = [set(names[i::2]) for i in (0, 1)]
    print(f"{len(names)} sources, {len(items)} clips; halves: {[sorted(h) for h in halves]}")

    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "config": {"fps": config.fps, "frames_per_hash": config.frames_per_hash},
        "fingerprint_cpu_s_per_video_s": round(cpu_s / video_s, 4),
        "splits": [],
    }
    for tune, report in ((0, 1), (1, 0)):
        on = [it for it in items if it["source"] in halves[tune]]
        held = [it for it in items if it["source"] in halves[report]]
        match = choose(on)
        tuned, measured = scores(on, match), scores(held, match)
        default = scores(held, MatchConfig())
        results["splits"].append(
            {
                "chosen": {"max_bits": match.max_bits, "min_share": match.min_share},
                "tune_half": tuned,
                "held_out_half": measured,
                "held_out_with_defaults": default,
                "blocking_held_out": {
                    f"tables={b.tables},min_shared={b.min_shared}": blocking_loss(held, match, b) for b in BLOCKINGS
                },
            }
        )
        print(
            f"chosen on half {tune}: max_bits={match.max_bits} min_share={match.min_share} "
            f"(F1 {tuned['f1']:.3f}); on half {report}: precision {measured['precision']:.3f} "
            f"recall {measured['recall']:.3f} (tp {measured['tp']}, fp {measured['fp']}, fn {measured['fn']}); "
            f"defaults {MatchConfig()}: precision {default['precision']:.3f} recall {default['recall']:.3f}"
        )
    every = scores(items, MatchConfig())
    per_kind = {}
    for kind in ("crf35", "half_size", "crop10", "shift0.5", "segment"):
        pairs = [
            (s, v)
            for s in items
            for v in items
            if s["kind"] == "source" and v["kind"] == kind and s["source"] == v["source"]
        ]
        per_kind[kind] = sum(is_pair(s["hashes"], v["hashes"], MatchConfig()) for s, v in pairs) / len(pairs)
    per_source = {}
    for name in names:
        mine = [it for it in items if it["source"] == name]
        per_source[name] = scores(mine, MatchConfig())["recall"]
    results["recall_by_source_with_defaults"] = per_source
    print(f"recall by source, defaults: {per_source}")
    results["all_with_defaults"] = every
    results["source_variant_recall_with_defaults"] = per_kind
    results["blocking_all_with_defaults"] = {
        f"tables={b.tables},min_shared={b.min_shared}": blocking_loss(items, MatchConfig(), b) for b in BLOCKINGS
    }
    print(f"all clips, defaults: {every}")
    print(f"source-variant recall by variant, defaults: {per_kind}")
    print(f"blocking, all clips, defaults: {results['blocking_all_with_defaults']}")
    print(f"fingerprint: {results['fingerprint_cpu_s_per_video_s']} CPU s per second of video")
    if args.synthetic:
        results["synthetic"] = {}
        for b in (Blocking(tables=1, min_shared=1), Blocking(), Blocking(tables=8)):
            name = f"tables={b.tables},min_shared={b.min_shared}"
            results["synthetic"][name] = synthetic(args.synthetic, MatchConfig(), b)
            print(f"synthetic, {name}: {results['synthetic'][name]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
