"""What the rate cap (TranscodeConfig.max_bitrate_ratio) does to size and quality, per clip.

Each clip of a folder is transcoded twice with the default settings, CRF only (`max_bitrate_ratio=None`)
and capped (the default, 1.0), and prints source bytes, output bytes and their ratio, and the luma
PSNR of each output against the source scaled to the output size the same way (bilinear, limited
range, rotated upright), frame by frame (every frame is kept, so frames pair up by index).

    uv run python bench/bench_rate_cap.py --clips <folder of clips>
"""

from __future__ import annotations

import argparse
import io
import math
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np

from kinetics_assets.media.transcode import TranscodeConfig, TranscodeResult, transcode

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".h264", ".h265", ".hevc"}


def _luma(frame: av.VideoFrame) -> np.ndarray:
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return rows[: frame.height, : frame.width].astype(np.float64)


def _reference_lumas(data: bytes, result: TranscodeResult) -> list[np.ndarray]:
    """The source's frames at the output's size, as the engine scales them, luma only."""
    rotation = result.source.rotation
    width, height = (result.height, result.width) if rotation in (90, 270) else (result.width, result.height)
    out = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            src_range = (
                frame.color_range if frame.color_range in (1, 2) else (2 if frame.format.name.startswith("yuvj") else 1)
            )
            scaled = frame.reformat(
                width=width,
                height=height,
                format="yuv420p",
                src_color_range=src_range,
                dst_color_range=1,
                interpolation="BILINEAR",
            )
            out.append(np.rot90(_luma(scaled), {0: 0, 90: -1, 180: 2, 270: 1}[rotation]))
    return out


def psnr(data: bytes, result: TranscodeResult) -> float:
    """Luma PSNR (dB) of the output against the scaled source, over all frames."""
    reference = _reference_lumas(data, result)
    with av.open(io.BytesIO(result.video)) as container:
        decoded = [_luma(f) for f in container.decode(video=0)]
    n = min(len(reference), len(decoded))
    mse = float(np.mean([np.mean((reference[i] - decoded[i]) ** 2) for i in range(n)]))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=Path, required=True, help="folder of video clips")
    args = parser.parse_args()
    clips = sorted(p for p in args.clips.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"PyAV {av.__version__}, {len(clips)} clips\n"
    )
    print("| clip | source kB | CRF only kB (x src) | PSNR dB | capped kB (x src) | PSNR dB | cap kb/s |")
    print("|---|---|---|---|---|---|---|")
    totals = {"src": 0, "crf": 0, "cap": 0}
    over = {"crf": 0, "cap": 0}
    started = time.perf_counter()
    for clip in clips:
        data = clip.read_bytes()
        crf = transcode(data, TranscodeConfig(max_bitrate_ratio=None), name=clip.name)
        cap = transcode(data, TranscodeConfig(), name=clip.name)
        totals["src"] += len(data)
        totals["crf"] += crf.bytes
        totals["cap"] += cap.bytes
        over["crf"] += crf.bytes > len(data)
        over["cap"] += cap.bytes > len(data)
        maxrate = f"{cap.video_maxrate / 1000:.0f}" if cap.video_maxrate else "-"
        print(
            f"| {clip.name} | {len(data) / 1e3:.1f} | {crf.bytes / 1e3:.1f} ({crf.bytes / len(data):.2f}) | "
            f"{psnr(data, crf):.2f} | {cap.bytes / 1e3:.1f} ({cap.bytes / len(data):.2f}) | {psnr(data, cap):.2f} | "
            f"{maxrate} |",
            flush=True,
        )
    print(
        f"\nall clips: source {totals['src'] / 1e6:.2f} MB, CRF only {totals['crf'] / 1e6:.2f} MB "
        f"({over['crf']} larger than their source), capped {totals['cap'] / 1e6:.2f} MB ({over['cap']} larger); "
        f"{time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
