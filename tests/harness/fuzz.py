"""Fuzzed video inputs through the transcode engine and the DataLoader's decode.

`run_fuzz(seed, count, workdir, real_dir=...)` mutates clips (generated ones, and the real clips of
`real_dir` when given, read in place) and feeds each mutant, in a separate worker process, to
`transcode()` (per-clip `timeout_s`), to `decode.sample_clip()` (the decode every
DataLoader item goes through; `read_clip` turns its errors into `BadVideoError`) and to the depth
step's decode (`decode.frame_timestamps` then `decode.decode_frames`, as `ray_depth` does). The worker is
watched from here: an input still running `hard_timeout_s` after it started is a hang, a worker
that dies (a native crash) is a crash; both are violations, the worker is replaced and the campaign
goes on. Every transcode must end `ok` or with a `TranscodeError` whose kind is in
`transcode.ERROR_KINDS`; the decode must end ok or with an ordinary exception.

Mutations: bit flips, truncation at a random offset, a corrupted header, one container's bytes
under another container's name, huge declared sizes (mp4 box sizes, or 0xFF runs in other
containers' headers), zero-length streams (a stream with no packets), and the empty file.
"""

from __future__ import annotations

import collections
import fractions
import multiprocessing as mp
import random
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

MUTATIONS = ("bit_flips", "truncate", "header", "wrong_container", "huge_size", "zero_length_stream", "empty")
PER_CLIP_TIMEOUT_S = 20.0


@dataclass
class FuzzReport:
    seed: int
    count: int
    inputs: int = 0
    by_mutation: dict[str, int] = field(default_factory=dict)
    transcode: dict[str, int] = field(default_factory=dict)
    transcode_by_mutation: dict[str, dict[str, int]] = field(default_factory=dict)
    decode: dict[str, int] = field(default_factory=dict)
    decode_examples: dict[str, str] = field(default_factory=dict)  # one message per error type
    depth_decode: dict[str, int] = field(default_factory=dict)  # the depth step's decode, by outcome
    hangs: int = 0
    crashes: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# --------------------------------------------------------------------------------------------------
# Inputs


def generated_clips(folder: Path) -> list[tuple[str, bytes]]:
    from tests.harness.clips import make_clip

    specs = [
        ("gen_h264.mp4", {"codec": "libx264", "audio": True}),
        ("gen_h264.mkv", {"codec": "libx264"}),
        ("gen_mpeg4.avi", {"codec": "mpeg4"}),
        ("gen_h264.mov", {"codec": "libx264", "fps": 30}),
    ]
    out = []
    for name, kwargs in specs:
        path = make_clip(folder / name, width=160, height=120, seconds=1.0, **kwargs)
        out.append((name, path.read_bytes()))
    return out


def zero_length_streams(folder: Path) -> list[tuple[str, bytes]]:
    """Containers whose video stream holds no packet at all."""
    import av

    out = []
    for name in ("zero_video.mp4", "zero_video.mkv"):
        path = folder / name
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            stream.codec_context.time_base = fractions.Fraction(1, 25)
            container.start_encoding()  # header and trailer, no packet
        out.append((name, path.read_bytes()))
    return out


def real_clips(real_dir: Path | None) -> list[tuple[str, bytes]]:
    if real_dir is None:
        return []
    return [
        (p.name, p.read_bytes())
        for p in sorted(Path(real_dir).iterdir())
        if p.is_file() and p.suffix.lower() in (".mp4", ".mkv", ".webm", ".mov", ".avi", ".h265", ".h264")
    ]


def _mp4_boxes(data: bytes) -> list[int]:
    """Offsets of box headers whose type is a known mp4 box (a shallow scan, nested boxes included)."""
    names = (
        b"ftyp",
        b"moov",
        b"mvhd",
        b"trak",
        b"tkhd",
        b"mdia",
        b"minf",
        b"stbl",
        b"stsd",
        b"stsz",
        b"stco",
        b"stts",
        b"stss",
        b"mdat",
        b"avcC",
    )
    return [i - 4 for name in names for i in _find_all(data, name) if i >= 4]


def _find_all(data: bytes, needle: bytes) -> list[int]:
    found, start = [], 0
    while len(found) < 64:
        i = data.find(needle, start)
        if i < 0:
            return found
        found.append(i)
        start = i + 1
    return found


def mutate(rng: random.Random, kind: str, name: str, data: bytes, others: list[tuple[str, bytes]]) -> tuple[str, bytes]:  # noqa: C901, PLR0911 - one branch per mutation, read as a table
    if kind == "empty":
        return name, b""
    if kind == "zero_length_stream":
        return name, data  # the zero-packet containers are the input themselves
    if kind == "bit_flips":
        buf = bytearray(data)
        for _ in range(rng.choice((1, 4, 32, 256))):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        return name, bytes(buf)
    if kind == "truncate":
        return name, data[: rng.randrange(1, max(2, len(data)))]
    if kind == "header":
        buf = bytearray(data)
        span = min(len(buf), rng.choice((16, 64, 512)))
        start = rng.randrange(0, max(1, min(len(buf), 1024) - span + 1))
        buf[start : start + span] = rng.randbytes(span)
        return name, bytes(buf)
    if kind == "wrong_container":
        other_name, _other = rng.choice(others)
        return f"{Path(name).stem}{Path(other_name).suffix}", data  # these bytes, another container's name
    if kind == "huge_size":
        buf = bytearray(data)
        boxes = _mp4_boxes(data)
        if boxes:
            at = rng.choice(boxes)
            if rng.random() < 0.5:
                buf[at : at + 4] = struct.pack(">I", rng.choice((0xFFFFFFFF, 0x7FFFFFFF, len(data) * 1000)))
            else:  # a 64-bit size far past the end of the file
                buf[at : at + 4] = struct.pack(">I", 1)
                buf[at + 8 : at + 16] = struct.pack(">Q", 1 << rng.choice((40, 50, 62)))
        else:  # EBML/RIFF/raw streams: saturate a run of header bytes that hold sizes
            start = rng.randrange(0, max(1, min(len(buf), 256) - 8))
            buf[start : start + 8] = b"\xff" * 8
        return name, bytes(buf)
    raise ValueError(f"unknown mutation {kind!r}")


# --------------------------------------------------------------------------------------------------
# The worker: one process that runs inputs until told to stop


def _worker(conn, timeout_s: float) -> None:
    import numpy as np

    from kinetics_assets.media.decode import decode_frames, frame_timestamps, sample_clip
    from kinetics_assets.media.sampling import ClipSampling, FrameSampling
    from kinetics_assets.media.transcode import ERROR_KINDS, TranscodeConfig, TranscodeError, transcode

    config = TranscodeConfig(timeout_s=timeout_s)
    sampling = ClipSampling()
    depth_sampling = FrameSampling()
    while True:
        message = conn.recv()
        if message is None:
            return
        name, data = message
        try:
            transcode(data, config, name=name)
            transcoded = "ok"
        except TranscodeError as exc:
            transcoded = exc.kind if exc.kind in ERROR_KINDS else f"UNKNOWN KIND {exc.kind}"
        except BaseException as exc:  # noqa: BLE001 - the engine promises TranscodeError only: a violation
            transcoded = f"ESCAPED {type(exc).__name__}: {exc}"[:300]
        try:
            sample_clip(data, sampling, rng=np.random.default_rng(0))
            decoded = "ok"
        except Exception as exc:  # noqa: BLE001 - read_clip turns these into BadVideoError naming the video
            decoded = f"{type(exc).__name__}: {exc}"[:200]
        try:  # the depth step's decode (ray_depth): timestamps from the packets, then the frames
            decode_frames(data, depth_sampling.indices(frame_timestamps(data)))
            depth = "ok"
        except Exception as exc:  # noqa: BLE001 - the depth task records these as the video's depth_error
            depth = f"{type(exc).__name__}: {exc}"[:200]
        conn.send((transcoded, decoded, depth))


class _Runner:
    def __init__(self, timeout_s: float, hard_timeout_s: float):
        self.timeout_s, self.hard_timeout_s = timeout_s, hard_timeout_s
        self.ctx = mp.get_context("spawn")
        self.proc = None
        self.conn = None

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.timeout_s), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent

    def run(self, name: str, data: bytes) -> tuple[str, str] | str:
        """(transcode outcome, decode outcome), or "hang" / "crash (exit code N)"."""
        if self.proc is None or not self.proc.is_alive():
            self._start()
        try:
            self.conn.send((name, data))
        except (BrokenPipeError, OSError):  # died after its last answer: start another
            self._kill()
            self._start()
            self.conn.send((name, data))
        if self.conn.poll(self.hard_timeout_s):
            try:
                return self.conn.recv()
            except (EOFError, OSError):  # the worker died mid-answer or before it
                pass
        else:
            self._kill()
            return "hang"
        self.proc.join(5)
        code = self.proc.exitcode
        self._kill()
        return f"crash (exit code {code})"

    def _kill(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join(10)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(10)
            except (BrokenPipeError, OSError):
                pass
        self._kill()


def run_fuzz(
    seed: int,
    count: int,
    workdir: Path,
    *,
    real_dir: Path | None = None,
    timeout_s: float = PER_CLIP_TIMEOUT_S,
    keep_failures: Path | None = None,
) -> FuzzReport:
    """`count` mutants, mutations taken in turn (each kind at least once when count >= 7)."""
    started = time.monotonic()
    rng = random.Random(seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    bases = generated_clips(workdir) + real_clips(real_dir)
    zero = zero_length_streams(workdir)
    report = FuzzReport(seed=seed, count=count)
    runner = _Runner(timeout_s, hard_timeout_s=timeout_s * 2 + 30)
    by_mutation, transcoded, decoded = collections.Counter(), collections.Counter(), collections.Counter()
    try:
        for index in range(count):
            kind = MUTATIONS[index % len(MUTATIONS)]
            base_name, base = rng.choice(zero if kind == "zero_length_stream" else bases)
            name, data = mutate(rng, kind, base_name, base, bases)
            by_mutation[kind] += 1
            outcome = runner.run(f"fuzz{index:04d}_{kind}_{name}", data)
            if isinstance(outcome, str):
                report.hangs += outcome == "hang"
                report.crashes += outcome.startswith("crash")
                report.violations.append(f"input {index} ({kind} of {base_name}): {outcome}")
                if keep_failures is not None:
                    keep_failures.mkdir(parents=True, exist_ok=True)
                    (keep_failures / f"seed{seed}_{index:04d}_{kind}_{name}").write_bytes(data)
                continue
            t, detail, depth_detail = outcome
            d = detail.split(":")[0]
            report.decode_examples.setdefault(d, f"{kind} of {base_name}: {detail}") if d != "ok" else None
            dd = depth_detail.split(":")[0]
            report.depth_decode[dd] = report.depth_decode.get(dd, 0) + 1
            transcoded[t] += 1
            per = report.transcode_by_mutation.setdefault(kind, {})
            per[t] = per.get(t, 0) + 1
            decoded[d] += 1
            if t.startswith(("ESCAPED", "UNKNOWN")):
                report.violations.append(f"input {index} ({kind} of {base_name}): transcode {t}")
        report.inputs = count
    finally:
        runner.close()
    report.by_mutation = dict(sorted(by_mutation.items()))
    report.transcode = dict(sorted(transcoded.items()))
    report.decode = dict(sorted(decoded.items()))
    report.seconds = round(time.monotonic() - started, 1)
    return report
