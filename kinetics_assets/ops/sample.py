"""A small Kinetics-style sample shard the demo builds and serves, so the real HTTP path runs
without any download from the internet.

Clips are drawn (a moving gradient, so encoders have real work and frames differ) and encoded with
PyAV. Tests use the same generator.
"""

from __future__ import annotations

import csv
import fractions
import io
import tarfile
import tempfile
from pathlib import Path

import av
import numpy as np


def frame_pattern(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose content moves with `index`, so every frame is distinct."""
    ys, xs = np.mgrid[0:height, 0:width]
    r = (xs * 255 // max(width - 1, 1) + index * 7) % 256
    g = (ys * 255 // max(height - 1, 1) + index * 3) % 256
    b = np.full_like(xs, (index * 11) % 256)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def make_clip(
    path: Path,
    *,
    codec: str = "libx264",
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    seconds: float = 2.0,
    pix_fmt: str = "yuv420p",
    audio: bool = False,
    options: dict[str, str] | None = None,
    container_format: str | None = None,
) -> Path:
    """Encode a synthetic clip to `path` (container chosen from the suffix unless given)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_frames = max(1, round(seconds * fps))
    with av.open(str(path), mode="w", format=container_format) as out:
        video = out.add_stream(codec, rate=fps)
        if not isinstance(video, av.VideoStream):
            raise TypeError(f"{codec!r} is not a video codec")
        video.width = width
        video.height = height
        video.pix_fmt = pix_fmt
        # Set on the codec, not the stream: a stream time base set here made PyAV give the packets
        # flushed at the end a pts of 0, which the mp4 muxer rejects.
        video.codec_context.time_base = fractions.Fraction(1, fps)
        if options:
            video.options = dict(options)
        audio_stream = None
        if audio:
            audio_stream = out.add_stream("aac", rate=44100)
            audio_stream.layout = "mono"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i, width, height), format="rgb24")
            frame = frame.reformat(format=pix_fmt)
            frame.pts = i
            frame.time_base = video.codec_context.time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio_stream is not None:
            _encode_tone(out, audio_stream, seconds)
    return path


def _encode_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    rate = stream.rate
    samples_per_frame = 1024
    total = int(seconds * rate)
    t0 = 0
    while t0 < total:
        n = min(samples_per_frame, total - t0)
        t = (np.arange(t0, t0 + n) / rate).astype(np.float32)
        pcm = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = t0
        frame.time_base = fractions.Fraction(1, rate)
        out.mux(stream.encode(frame))
        t0 += n
    out.mux(stream.encode(None))


# The sample shard: K700-2020 layout (class folders), a few clip shapes, and the defects real
# archives carry, so the demo shows a failure row as well as ok rows.
SAMPLE_CLIPS = [
    # (class, youtube_id, start, width, height, fps, seconds, audio)
    ("abseiling", "sAmPle00001", 10, 480, 270, 25, 2.0, True),
    ("abseiling", "sAmPle00002", 0, 320, 240, 30, 2.0, False),
    ("playing guitar", "sAmPle00003", 35, 270, 480, 24, 2.0, False),
    ("playing guitar", "sAmPle00004", 3, 640, 360, 30, 1.5, True),
    ("riding a bike", "sAmPle00005", 120, 176, 144, 15, 2.0, False),
    ("riding a bike", "sAmPle00006", 7, 400, 300, 25, 2.0, False),
]


def build_sample_shard(folder: Path, name: str = "sample_val_001") -> tuple[Path, Path]:
    """Write `<name>.tar.gz` and `annotations.csv` into `folder`; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{name}.tar.gz"
    annotations = folder / "annotations.csv"
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive, "w:gz") as tar:
        rows = []
        for label, yid, start, w, h, fps, seconds, audio in SAMPLE_CLIPS:
            member = f"{label}/{yid}_{start:06d}_{start + 10:06d}.mp4"
            clip = make_clip(Path(tmp) / f"{yid}.mp4", width=w, height=h, fps=fps, seconds=seconds, audio=audio)
            tar.add(clip, arcname=member)
            rows.append((label, yid, start, start + 10, "validate"))
        # A clip cut short in transit, and the macOS metadata file some archives carry.
        good = (Path(tmp) / "sAmPle00002.mp4").read_bytes()
        _add_bytes(tar, "riding a bike/sAmPle00007_000020_000030.mp4", good[: len(good) // 3])
        rows.append(("riding a bike", "sAmPle00007", 20, 30, "validate"))
        _add_bytes(tar, "abseiling/._sAmPle00001_000010_000020.mp4", b"\x00\x05\x16\x07" + b"\x00" * 80)
    with annotations.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writerows(rows)
    return archive, annotations


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
