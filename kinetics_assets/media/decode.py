"""Frames out of a stored video: one way to open it, index its frames and decode the ones wanted.

A frame's index is its place in presentation order over the video's full decode, which is also the
order the transcoder wrote frames in, so index i of the RGB video and index i of its depth video
(sampled "every") are one frame. The index comes from demuxing alone (`FrameIndex`), which costs a
small fraction of a decode and turns frame indices into seek targets.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from fractions import Fraction

    from kinetics_assets.media.sampling import ClipSampling

VideoSource = bytes | bytearray | memoryview | BinaryIO
"""Video bytes, or a readable and seekable file object (a Lance blob is one)."""

T = TypeVar("T")


def open_video(video: VideoSource) -> av.container.InputContainer:
    """An input container over the bytes or file object; use it as a context manager."""
    return av.open(io.BytesIO(video) if isinstance(video, (bytes, bytearray, memoryview)) else video, mode="r")


def video_stream(container: av.container.InputContainer, *, threads: int = 1) -> av.VideoStream:
    """The first video stream, its decoder set to `threads` threads, or a ValueError that says why
    there is none to decode.

    One thread by default: a decode runs in a task that reserves one CPU (a Ray task, a DataLoader
    worker), and one single-threaded codec per core is the efficient layout (DESIGN.md). A caller
    that reserves n CPUs passes n; 0 lets FFmpeg pick (one per core plus one), whatever else runs.
    """
    if not container.streams.video:
        raise ValueError(f"no video stream in the {container.format.name!r} container")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise ValueError(f"video stream #{stream.index} has no decoder (unknown or damaged codec)")
    if threads < 0:
        raise ValueError(f"decoder threads must be >= 0 (0 = auto), got {threads}")
    stream.codec_context.thread_count = threads
    return stream


@dataclass(frozen=True)
class FrameIndex:
    """Every frame's pts in presentation order and the keyframes' pts, in the stream's time base."""

    pts: list[int]
    keyframes: list[int]
    time_base: Fraction

    def __len__(self) -> int:
        return len(self.pts)

    @property
    def timestamps(self) -> np.ndarray:
        """Frame times in seconds (float64), one per frame."""
        return np.asarray(self.pts, dtype=np.float64) * float(self.time_base)

    def keyframe_before(self, pts: int) -> int | None:
        """The last keyframe at or before `pts` (the first keyframe when none is); None without any."""
        if not self.keyframes:
            return None
        return self.keyframes[max(0, int(np.searchsorted(self.keyframes, pts, side="right")) - 1)]


def first_frame_size(video: VideoSource) -> tuple[int, int]:
    """(width, height) of the first decoded frame: what a player would show."""
    with open_video(video) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


def index_frames(container: av.container.InputContainer, stream: av.VideoStream) -> FrameIndex:
    """Demux the stream (decoding nothing) and index its frames; empty packets hold no frame."""
    pts: list[int] = []
    keyframes: list[int] = []
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue
        pts.append(packet.pts)
        if packet.is_keyframe:
            keyframes.append(packet.pts)
    pts.sort()
    keyframes.sort()
    if stream.time_base is None:  # a demuxed stream has one; its pts mean nothing without it
        raise ValueError("the video stream has no time base")
    return FrameIndex(pts, keyframes, stream.time_base)


def frame_timestamps(video: VideoSource) -> np.ndarray:
    """Presentation timestamps (s) of every frame, from the packets, without decoding pictures."""
    with open_video(video) as container:
        return index_frames(container, video_stream(container)).timestamps


def rgb_converter(size: tuple[int, int] | None = None) -> Callable[[av.VideoFrame], np.ndarray]:
    """Frame -> uint8 RGB [H,W,3], resized to `size` (width, height) when given. One reused scaler:
    `frame.to_ndarray(format="rgb24")` builds a new one per frame, 2.1 ms for a 640x360 frame against
    0.32 ms (same pixels).
    """
    reformatter = VideoReformatter()
    width, height = size if size is not None else (None, None)

    def to_rgb(frame: av.VideoFrame) -> np.ndarray:
        return reformatter.reformat(frame, format="rgb24", width=width, height=height).to_ndarray()

    return to_rgb


def decode_frames(
    video: VideoSource, indices: np.ndarray | None = None, *, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames uint8 [N,H,W,3] and their timestamps (s) for the chosen indices (all when None).

    Decodes forward once; frames not chosen are skipped before colour conversion, which is where
    most of the per-frame cost is. `threads`: the decoder's threads (frame or slice), see `video_stream`.
    """
    wanted = None if indices is None else {int(i) for i in indices}
    frames: list[np.ndarray] = []
    times: list[float] = []
    to_rgb = rgb_converter()
    with open_video(video) as container:
        stream = video_stream(container, threads=threads)
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if wanted is not None and index not in wanted:
                continue
            frames.append(to_rgb(frame))
            times.append(float(frame.time) if frame.time is not None else float("nan"))
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8), np.zeros(0)
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def decode_selected(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    index: FrameIndex,
    indices: np.ndarray,
    *,
    convert: Callable[[av.VideoFrame], T],
) -> list[T]:
    """The frames at `indices` (presentation order; repeats and any order allowed), converted by
    `convert`, in the order asked.

    Seeks to the keyframe at or before each wanted stretch and decodes forward, continuing without a
    seek while the next wanted frame is reached sooner by decoding on than by seeking: a 16-frame clip
    costs at most one keyframe interval of extra decoding, not the whole video. Frames that are not
    wanted are never converted. IndexError for an index outside the video, ValueError when a wanted
    frame cannot be decoded.
    """
    n = len(index)
    bad = indices[(indices < 0) | (indices >= n)]
    if bad.size:
        raise IndexError(f"frame index {int(bad[0])} out of range for a video of {n} frames")
    wanted = [index.pts[i] for i in indices.tolist()]
    decoded = _decode_at(container, stream, index, wanted, convert)
    return [decoded[pts] for pts in wanted]


def _decode_at(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    index: FrameIndex,
    wanted_pts: Iterable[int],
    convert: Callable[[av.VideoFrame], T],
) -> dict[int, T]:
    targets = sorted({int(p) for p in wanted_pts})
    wanted = set(targets)
    decoded: dict[int, T] = {}
    frames: Iterator[av.VideoFrame] | None = None
    last_pts: int | None = None
    for target in targets:
        if target in decoded:
            continue
        key = index.keyframe_before(target)
        if frames is None or last_pts is None or last_pts >= target or (key is not None and key > last_pts):
            frames = _decode_from(container, stream, key)
            last_pts = None
        last_pts = _decode_until(frames, target, last_pts=last_pts, wanted=wanted, decoded=decoded, convert=convert)
        if target not in decoded and key is not None:
            # The seek landed past the target (a container whose index disagrees with the packets):
            # decode from the start instead.
            frames = _decode_from(container, stream, None)
            last_pts = _decode_until(frames, target, last_pts=None, wanted=wanted, decoded=decoded, convert=convert)
        if target not in decoded:
            raise ValueError(f"could not decode the frame at pts {target} (time base {stream.time_base})")
    return decoded


def _decode_until(
    frames: Iterator[av.VideoFrame],
    target: int,
    *,
    last_pts: int | None,
    wanted: set[int],
    decoded: dict[int, T],
    convert: Callable[[av.VideoFrame], T],
) -> int | None:
    """Decode `frames` up to `target`, converting the wanted ones into `decoded`; the last pts decoded
    (`last_pts` when `frames` has no more).
    """
    for frame in frames:
        if frame.pts is None:
            continue
        last_pts = frame.pts
        if frame.pts in wanted and frame.pts not in decoded:
            decoded[frame.pts] = convert(frame)
        if frame.pts >= target:
            break
    return last_pts


def _decode_from(
    container: av.container.InputContainer, stream: av.VideoStream, keyframe_pts: int | None
) -> Iterator[av.VideoFrame]:
    """Frames from the keyframe at `keyframe_pts` on (from the start when None)."""
    if keyframe_pts is None:
        container.seek(0, backward=True, any_frame=False)
    else:
        container.seek(keyframe_pts, stream=stream, backward=True, any_frame=False)
    return container.decode(stream)


# --------------------------------------------------------------------------------------------------
# Training clips: decode only the frames a clip holds.


@dataclass
class DecodedClip:
    """One clip's frames, which frames they are, and the index of the whole video they came from."""

    frames: np.ndarray  # uint8 [T,H,W,3] RGB
    timestamps: np.ndarray  # float64 [T] seconds
    indices: np.ndarray  # int64 [T] frame indices, presentation order
    video_frames: int  # frames in the whole video
    video_timestamps: np.ndarray = field(repr=False)  # float64 [video_frames]


def short_side_size(width: int, height: int, short_side: int | None) -> tuple[int, int] | None:
    """(width, height) scaled so the shorter side is `short_side`, aspect kept; None for no resize."""
    if short_side is None or min(width, height) == short_side:
        return None
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_clip(
    video: VideoSource,
    indices: np.ndarray | list[int],
    *,
    size: tuple[int, int] | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames uint8 [T,H,W,3] and their timestamps (s) at the given frame indices.

    Indices are presentation order over the whole video (repeats and any order allowed). Only the
    stretch from the keyframe before each wanted run to its last frame is decoded. `size` (width,
    height) scales the frames during colour conversion, which is cheaper than scaling afterwards.
    `threads`: the decoder's threads, see `video_stream`.
    """
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    with open_video(video) as container:
        stream = video_stream(container, threads=threads)
        index = index_frames(container, stream)
        frames = decode_selected(container, stream, index, wanted, convert=rgb_converter(size))
    return np.stack(frames), index.timestamps[wanted]


def sample_clip(
    video: VideoSource,
    sampling: ClipSampling,
    *,
    rng: np.random.Generator | None = None,
    clip: int = 0,
    short_side: int | None = None,
    expected_frames: int | None = None,
    threads: int = 1,
) -> DecodedClip:
    """Pick a clip with `sampling` from the video's own timestamps and decode it (one open).

    `short_side` scales the frames (aspect kept) while converting them. `expected_frames` (the
    table's frame count) catches truncated videos, which otherwise demux and decode without error,
    just shorter. `threads`: the decoder's threads, see `video_stream`.
    """
    with open_video(video) as container:
        stream = video_stream(container, threads=threads)
        size = short_side_size(stream.codec_context.width, stream.codec_context.height, short_side)
        index = index_frames(container, stream)
        if not len(index):
            raise ValueError("video holds no frames")
        if expected_frames is not None and len(index) != expected_frames:
            raise ValueError(
                f"video holds {len(index)} frames, the table says {expected_frames} (truncated or damaged)"
            )
        video_ts = index.timestamps
        indices = sampling.indices(video_ts, rng=rng, clip=clip)
        frames = decode_selected(container, stream, index, indices, convert=rgb_converter(size))
    return DecodedClip(np.stack(frames), video_ts[indices], indices, len(index), video_ts)
