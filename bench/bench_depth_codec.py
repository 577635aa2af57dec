"""Size / speed / error of the depth-video encodings on 250 frames of 640x360 depth.

Depth sources:
  (a) synthetic: a smooth moving scene (gradients, a slow wave) with a moving disc in front, so there
      is a depth discontinuity as in real footage; values in [0, 1].
  (b) tiny random Depth Anything V2 (tests/harness/tiny_depth.py) run on a real clip.
  (c) the full Depth-Anything-V2-Small architecture with RANDOM weights (calibrated head) on a real
      clip. Random weights are not real depth: their output is texture-like and harder to compress
      than a trained model's smooth maps, so (b)/(c) are pessimistic cases, (a) an optimistic one.
Real clips come from $KINETICS_REAL_VIDEOS_DIR; (b) and (c) are skipped when it is unset.

Run:  uv run python bench/bench_depth_codec.py [--frames 250] [--full-short-side 294] [--out FILE]
Errors are relative to the per-video depth range (hi - lo), so they read the same for any model scale.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinetics_assets.media.depth_codec import DepthEncoding, decode_depth, depth_range, encode_depth

WIDTH, HEIGHT = 640, 360
ENCODINGS = [
    ("h264_gray10 crf 6", DepthEncoding("h264_gray10", crf=6)),
    ("h264_gray10 crf 12 (default)", DepthEncoding("h264_gray10", crf=12)),
    ("h264_gray10 crf 18", DepthEncoding("h264_gray10", crf=18)),
    ("h264_gray10 crf 12 veryfast", DepthEncoding("h264_gray10", crf=12, preset="veryfast")),
    ("ffv1_gray16 (lossless)", DepthEncoding("ffv1_gray16")),
]


def synthetic_depth(n: int) -> np.ndarray:
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    out = np.empty((n, HEIGHT, WIDTH), dtype=np.float32)
    for i in range(n):
        t = i / 25.0
        base = 0.25 + 0.35 * ys / HEIGHT + 0.05 * np.sin(xs / 60.0 + t) * np.cos(ys / 45.0 - 0.5 * t)
        cx, cy = WIDTH * (0.3 + 0.4 * (i / max(n - 1, 1))), HEIGHT * 0.55
        disc = (xs - cx) ** 2 + (ys - cy) ** 2 < (HEIGHT * 0.18) ** 2
        out[i] = np.where(disc, 0.85 + 0.05 * (ys - cy) / HEIGHT, base)
    return out


def real_frames(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First n frames of a real clip at 640x360 RGB, with their timestamps (s)."""
    folder = os.environ.get("KINETICS_REAL_VIDEOS_DIR")
    if not folder:
        raise FileNotFoundError("KINETICS_REAL_VIDEOS_DIR not set")
    frames, times = [], []
    with av.open(str(Path(folder) / name)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.reformat(width=WIDTH, height=HEIGHT, format="rgb24").to_ndarray())
            times.append(float(frame.pts * stream.time_base))
            if len(frames) == n:
                break
    t = np.asarray(times)
    return np.stack(frames), t - t[0]


def run_model(frames: np.ndarray, local_path: Path, model_id: str, short_side: int) -> tuple[np.ndarray, float]:
    from kinetics_assets.depth.model import DepthEstimator, DepthModelConfig

    est = DepthEstimator(DepthModelConfig(model_id=model_id, local_path=local_path, input_short_side=short_side))
    start = time.perf_counter()
    depth = est.predict(frames)
    return depth, time.perf_counter() - start


def measure(depth: np.ndarray, timestamps: np.ndarray) -> list[str]:
    lo, hi = depth_range(depth)
    span = hi - lo
    raw_f16 = depth.size * 2
    f16_err = np.abs(depth.astype(np.float16).astype(np.float32) - depth) / span
    rows = [
        (
            f"| float16 raw | {raw_f16 / 1e6:.1f} MB | 1.0x | - | - | - | {f16_err.mean():.1e} | "
            f"{np.quantile(f16_err, 0.999):.1e} | {f16_err.max():.1e} |"
        )
    ]
    rng = np.random.default_rng(0)
    for label, enc in ENCODINGS:
        t0 = time.perf_counter()
        encoded = encode_depth(depth, timestamps, enc)
        t1 = time.perf_counter()
        decoded = decode_depth(encoded.data, encoded.lo, encoded.hi)
        t2 = time.perf_counter()
        starts = rng.integers(0, len(depth) - 16, size=5)
        t3 = time.perf_counter()
        for s in starts:
            decode_depth(encoded.data, encoded.lo, encoded.hi, frame_indices=range(s, s + 16))
        t4 = time.perf_counter()
        err = np.abs(decoded - depth) / span
        rows.append(
            f"| {label} | {len(encoded.data) / 1e6:.3f} MB | {raw_f16 / len(encoded.data):.0f}x | {t1 - t0:.2f} | "
            f"{t2 - t1:.2f} | {(t4 - t3) / len(starts) * 1000:.0f} | {err.mean():.1e} | "
            f"{np.quantile(err, 0.999):.1e} | {err.max():.1e} |"
        )
    return rows


HEADER = [
    "| encoding | bytes | vs float16 | encode s | decode s (all) | 16-frame read ms | mean abs err | p99.9 abs err | max abs err |",
    "|---|---|---|---|---|---|---|---|---|",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--clip", default="cockatoo_720p_yuv444_imageio.mp4", help="real clip (>= --frames frames)")
    parser.add_argument(
        "--full-short-side",
        type=int,
        default=294,
        help="input short side for (c); 518 is production but ~1.7 s/frame on 2 CPU cores",
    )
    parser.add_argument("--skip-full", action="store_true", help="skip (c)")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()
    n = args.frames
    import torch

    lines = [
        (
            f"Machine: {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
            f"cuda {'yes' if torch.cuda.is_available() else 'no'}; PyAV {av.__version__}. "
            f"{n} frames, {WIDTH}x{HEIGHT}. Errors are fractions of the video's depth range."
        ),
        "",
    ]

    def section(title: str, depth: np.ndarray, ts: np.ndarray) -> None:
        print(f"measuring {title} ...", file=sys.stderr, flush=True)
        lines.extend([f"### {title}", "", *HEADER, *measure(depth, ts), ""])

    ts_synth = np.arange(n) / 25.0
    section("(a) synthetic smooth scene with a moving disc", synthetic_depth(n), ts_synth)

    try:
        frames, ts = real_frames(args.clip, n)
    except FileNotFoundError as exc:
        lines.append(f"(b), (c) skipped: {exc}")
        frames = None
    if frames is not None:
        from tests.harness.tiny_depth import (
            DepthAnythingForDepthEstimation,
            calibrate_random_head,
            depth_anything_v2_small_config,
            save_tiny_depth_model,
        )

        with tempfile.TemporaryDirectory() as tmp:
            tiny = save_tiny_depth_model(Path(tmp) / "tiny")
            depth, secs = run_model(frames, tiny, "tiny", 518)
            section(
                f"(b) tiny random Depth Anything V2 on `{args.clip}` ({len(frames)} frames, "
                f"model {secs:.0f} s on CPU at 518 short side)",
                depth,
                ts,
            )
            if not args.skip_full:
                import torch

                torch.manual_seed(0)
                full = DepthAnythingForDepthEstimation(depth_anything_v2_small_config()).eval()
                calibrate_random_head(full).save_pretrained(Path(tmp) / "full")
                depth, secs = run_model(frames, Path(tmp) / "full", "v2-small-random", args.full_short_side)
                section(
                    f"(c) full V2-Small architecture, RANDOM weights, on `{args.clip}` "
                    f"(input short side {args.full_short_side}, model {secs:.0f} s)",
                    depth,
                    ts,
                )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
