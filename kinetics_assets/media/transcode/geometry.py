"""The picture's geometry: the output keeps the source's display aspect ratio (square pixels,
upright), its short side at most `short_side`, never upscaled, both sides even; a clip whose frame
size changes is fitted, frame by frame, into the size most of its frames have, and padded.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, cast

import av
import numpy as np

from kinetics_assets.media.transcode.source import MAX_SAR, fraction

if TYPE_CHECKING:
    from av.video.codeccontext import VideoCodecContext
    from av.video.plane import VideoPlane


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2.0))


def output_size(width: int, height: int, sar: Fraction, rotation: int, short_side: int) -> tuple[int, int]:
    """Upright, square-pixel output size with the display short side at most `short_side`."""
    display_w = width * sar.numerator / sar.denominator
    display_h = float(height)
    if rotation in (90, 270):
        display_w, display_h = display_h, display_w
    scale = min(1.0, short_side / min(display_w, display_h))
    return _even(display_w * scale), _even(display_h * scale)


def clockwise_rotation(frame: av.VideoFrame) -> int:
    """Display rotation from the frame's display matrix, as clockwise multiples of 90 degrees.

    PyAV 18 exposes the matrix as frame side data (FFmpeg attaches the stream's matrix to every decoded
    frame) and `VideoFrame.rotation` reads its angle, counter-clockwise, in [-180, 180].
    """
    return round(-frame.rotation / 90.0) % 4 * 90


class FrameGeometry:
    """The frame sizes of one clip, its display rotation, the output size, and the size each frame
    is scaled to (before the rotation, which is a cheap plane transpose afterwards).

    With `canvas` (display-oriented output size) every frame is fitted into it and padded: the second
    pass of a clip whose frame size changes.
    """

    def __init__(
        self,
        *,
        sar: Fraction,
        short_side: int,
        canvas: tuple[int, int] | None = None,
        size_sars: dict[tuple[int, int], Fraction] | None = None,
    ) -> None:
        self.sar = sar
        self.short_side = short_side
        self.canvas = canvas
        # frame sizes: frames per size (in order of first appearance), each size's SAR, changes
        self.size_counts: dict[tuple[int, int], int] = {}
        self.size_sars: dict[tuple[int, int], Fraction] = dict(size_sars or {})
        self.size_changes = 0
        self.last_size: tuple[int, int] | None = None
        self.fits: dict[tuple[int, int], tuple[int, int]] = {}
        self.rotation = 0
        self.out_w = self.out_h = 0
        self.scale_w = self.scale_h = 0

    def count(self, frame: av.VideoFrame, decoder: VideoCodecContext) -> None:
        """Count the frame's size; a size seen first takes the SAR of the sequence header in use."""
        size = (frame.width, frame.height)
        if size not in self.size_counts:
            self.size_counts[size] = 0
            if size not in self.size_sars:
                # The decoder's SAR follows the sequence header in use (each size can bring its own).
                later = len(self.size_counts) > 1
                sar = fraction(decoder.sample_aspect_ratio) if later else None
                self.size_sars[size] = sar if sar is not None and Fraction(1, MAX_SAR) <= sar <= MAX_SAR else self.sar
        self.size_counts[size] += 1
        if self.last_size is not None and size != self.last_size:
            self.size_changes += 1
        self.last_size = size

    def start(self, frame: av.VideoFrame) -> None:
        """The rotation and the output size, from the first frame (or the canvas)."""
        self.rotation = clockwise_rotation(frame)
        if self.canvas is not None:
            self.out_w, self.out_h = self.canvas
        else:
            self.out_w, self.out_h = output_size(frame.width, frame.height, self.sar, self.rotation, self.short_side)
        # Scale to the pre-rotation size; the rotation is a cheap plane transpose afterwards.
        if self.rotation in (90, 270):
            self.scale_w, self.scale_h = self.out_h, self.out_w
        else:
            self.scale_w, self.scale_h = self.out_w, self.out_h

    def canvas_of_sizes(self) -> tuple[int, int]:
        """Output size of a clip with several frame sizes: that of the size most frames have."""
        (width, height), _ = max(self.size_counts.items(), key=lambda item: (item[1], item[0][0] * item[0][1]))
        return output_size(width, height, self.size_sars[(width, height)], self.rotation, self.short_side)

    def fit(self, size: tuple[int, int]) -> tuple[int, int]:
        """Pre-rotation scale size of a frame of `size` inside the canvas, its display aspect kept."""
        if size not in self.fits:
            sar = self.size_sars.get(size, self.sar)
            display_w, display_h = size[0] * sar.numerator / sar.denominator, float(size[1])
            if self.rotation in (90, 270):
                display_w, display_h = display_h, display_w
            scale = min(self.out_w / display_w, self.out_h / display_h)
            fit_w = min(self.out_w, _even(display_w * scale))
            fit_h = min(self.out_h, _even(display_h * scale))
            self.fits[size] = (fit_h, fit_w) if self.rotation in (90, 270) else (fit_w, fit_h)
        return self.fits[size]

    def scale_size(self, frame: av.VideoFrame) -> tuple[int, int]:
        """The size `frame` is scaled to, before the rotation."""
        if self.canvas is not None:
            return self.fit((frame.width, frame.height))
        return self.scale_w, self.scale_h

    def place(self, scaled: av.VideoFrame) -> av.VideoFrame:
        """A scaled yuv420p frame rotated upright and, when smaller than the output, padded black."""
        if self.rotation:
            scaled = rotate_yuv420p(scaled, self.rotation)
        if (scaled.width, scaled.height) != (self.out_w, self.out_h):
            scaled = pad_yuv420p(scaled, self.out_w, self.out_h)
        return scaled


def _plane_array(plane: VideoPlane) -> np.ndarray:
    """A writable (height, width) view of one plane, skipping the line padding."""
    # PyAV's stub omits the buffer protocol its planes implement.
    buf = np.frombuffer(cast("memoryview", plane), dtype=np.uint8).reshape(-1, plane.line_size)
    return buf[: plane.height, : plane.width]


def pad_yuv420p(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """`frame` centred on a black (limited-range) yuv420p canvas of width x height."""
    canvas = av.VideoFrame(width, height, "yuv420p")
    x0 = (width - frame.width) // 2 & ~1
    y0 = (height - frame.height) // 2 & ~1
    for i, (src, dst) in enumerate(zip(frame.planes, canvas.planes, strict=True)):
        shift = 0 if i == 0 else 1
        target = _plane_array(dst)
        target[...] = 16 if i == 0 else 128
        picture = _plane_array(src)
        top, left = y0 >> shift, x0 >> shift
        target[top : top + picture.shape[0], left : left + picture.shape[1]] = picture
    canvas.colorspace = frame.colorspace
    canvas.color_primaries = frame.color_primaries
    canvas.color_trc = frame.color_trc
    return canvas


def rotate_yuv420p(frame: av.VideoFrame, rotation: int) -> av.VideoFrame:
    """Rotate a yuv420p frame clockwise by 90/180/270 degrees (planes transposed with numpy)."""
    if rotation in (90, 270):
        rotated = av.VideoFrame(frame.height, frame.width, "yuv420p")
    else:
        rotated = av.VideoFrame(frame.width, frame.height, "yuv420p")
    k = {90: -1, 180: 2, 270: 1}[rotation]  # np.rot90 turns counter-clockwise for positive k
    for src, dst in zip(frame.planes, rotated.planes, strict=True):
        _plane_array(dst)[...] = np.rot90(_plane_array(src), k)
    rotated.colorspace = frame.colorspace
    rotated.color_primaries = frame.color_primaries
    rotated.color_trc = frame.color_trc
    return rotated
