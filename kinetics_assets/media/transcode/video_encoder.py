"""The H.264 side of a transcode: each frame converted to the output picture in one swscale pass
(size, 8-bit 4:2:0, limited range and, for RGB sources, the output's matrix), encoded by libx264
and written to an mp4 held in memory with `moov` in front.
"""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING, Any, cast

import av
from av.video.reformatter import VideoReformatter

from kinetics_assets.media.transcode.config import TranscodeConfig, TranscodeError
from kinetics_assets.media.transcode.rate import VBV_BUFFER_S

if TYPE_CHECKING:
    from fractions import Fraction

    from kinetics_assets.media.transcode.geometry import FrameGeometry

# FFmpeg's AVColorSpace values that swscale has coefficients for, by its names.
SWS_MATRIX = {1: "itu709", 4: "fcc", 5: "itu601", 6: "itu601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
AVCOL_BT709 = 1
AVCOL_SMPTE170M = 6
AVCOL_UNSPECIFIED = 2
AVCOL_RESERVED = 3
# Sizes from which an RGB source's output is tagged BT.709 (HD), as players assume.
_HD_MIN_WIDTH = 1280
_SD_MAX_HEIGHT = 576


def output_matrix(frame: av.VideoFrame) -> int:
    """The YUV matrix (AVColorSpace) of the output.

    A YUV source's matrix is kept as it is, untagged included: its samples are not re-matrixed, and
    an untagged output is read exactly as its untagged source by the same reader (FFmpeg-based
    readers assume BT.601 for both; a guess would change what a training pipeline sees). RGB sources
    are converted by us, so their matrix is ours to name: BT.709 from 1280 wide or over 576 lines,
    else BT.601 (what players assume for such sizes).
    """
    cs = int(frame.colorspace) if frame.colorspace is not None else AVCOL_UNSPECIFIED
    if frame.format.is_rgb or cs == 0:  # 0 = RGB/GBR
        return AVCOL_BT709 if frame.width >= _HD_MIN_WIDTH or frame.height > _SD_MAX_HEIGHT else AVCOL_SMPTE170M
    return AVCOL_UNSPECIFIED if cs == AVCOL_RESERVED else cs


def source_range(frame: av.VideoFrame) -> int:
    """The frame's colour range (1 limited, 2 full); untagged yuvj formats are full range."""
    if frame.color_range in (1, 2):
        return frame.color_range
    return 2 if frame.format.name.startswith("yuvj") else 1


class VideoEncoder:
    """The output mp4 and its H.264 stream; video packets are held back while `mux` is told to
    hold them (the stream list is fixed once the header is written, so video waits until we know
    whether an audio track will exist).
    """

    def __init__(self, config: TranscodeConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.reformatter = VideoReformatter()
        self.buffer = io.BytesIO()
        self.output: av.container.OutputContainer | None = None
        self.stream: Any = None
        self.held: list[av.Packet] = []  # video packets waiting for the audio decision
        self.matrix = AVCOL_UNSPECIFIED
        self.geometry: FrameGeometry | None = None
        self.time_base: Fraction | None = None

    def fail(self, kind: str, message: str) -> TranscodeError:
        return TranscodeError(kind, message, name=self.name)

    def open(
        self,
        frame: av.VideoFrame,
        *,
        geometry: FrameGeometry,
        rate: Fraction,
        time_base: Fraction,
        keyint: int,
        maxrate: int | None,
    ) -> av.container.OutputContainer:
        """Open the mp4 and its H.264 stream, tagged after the first frame."""
        cfg = self.config
        self.geometry = geometry
        self.time_base = time_base
        self.matrix = output_matrix(frame)
        try:
            # faststart re-reads the finished file to move `moov` in front; io_open serves that
            # second read from the same in-memory buffer.
            self.output = output = av.open(
                self.buffer,
                mode="w",
                format="mp4",
                options={"movflags": "+faststart"},
                io_open=lambda *_: BufferReader(self.buffer),  # PyAV passes (url, flags, options)
            )
            options = {
                "preset": cfg.preset,
                "crf": str(cfg.crf),
                "g": str(keyint),
                "keyint_min": str(keyint),
            }
            if self.matrix == AVCOL_UNSPECIFIED:
                # x264 writes the range flag only in a signal-type block, which it writes only with a
                # colour tag or a video format: "component" makes it write one that says "limited"
                # while the matrix stays unspecified, as the source's is.
                options["x264-params"] = "videoformat=component"
            if maxrate is not None:
                options["maxrate"] = str(maxrate)
                options["bufsize"] = str(int(maxrate * VBV_BUFFER_S))
            out_video = output.add_stream("libx264", rate=rate, options=options)
            out_video.width = geometry.out_w
            out_video.height = geometry.out_h
            out_video.pix_fmt = "yuv420p"
            out_video.time_base = time_base
            ctx = out_video.codec_context
            ctx.time_base = time_base
            ctx.thread_count = cfg.threads
            ctx.color_range = 1  # limited, always signalled (see the x264 options above)
            if self.matrix != AVCOL_UNSPECIFIED:
                ctx.colorspace = self.matrix
            if frame.color_primaries not in (None, 0, 2):
                ctx.color_primaries = frame.color_primaries
            if frame.color_trc not in (None, 0, 2):
                ctx.color_trc = frame.color_trc
            self.stream = out_video
        except Exception as exc:
            raise self.fail("encode_error", f"cannot set up the H.264 encoder: {exc}") from exc
        return output

    def encode(self, frame: av.VideoFrame, ts: int) -> list[av.Packet]:
        """The packets of one decoded frame, converted and stamped with `ts` (in the time base)."""
        geometry = self._geometry()
        scale_w, scale_h = geometry.scale_size(frame)
        try:
            # One swscale pass: size, 8-bit 4:2:0 and full -> limited range together.
            scaled = self.reformatter.reformat(
                frame,
                width=scale_w,
                height=scale_h,
                format="yuv420p",
                # RGB is converted with the output's matrix; YUV keeps its own (None: the frame's).
                # PyAV takes swscale's matrix names too (its stub says int only).
                dst_colorspace=cast("int | None", SWS_MATRIX.get(self.matrix) if frame.format.is_rgb else None),
                src_color_range=source_range(frame),
                dst_color_range=1,
                interpolation=self.config.interpolation.upper(),
                threads=self.config.threads,
            )
            scaled = geometry.place(scaled)
        except Exception as exc:
            raise self.fail("decode_error", f"cannot convert frame at tick {ts}: {exc}") from exc
        scaled.pts = ts
        scaled.time_base = self.time_base
        scaled.duration = 0
        scaled.pict_type = av.video.frame.PictureType.NONE  # let x264 place keyframes, not the source
        scaled.color_range = 1
        try:
            return self.stream.encode(scaled)
        except Exception as exc:
            raise self.fail("encode_error", f"encoding the frame at tick {ts} failed: {exc}") from exc

    def mux(self, packets: list[av.Packet], *, hold: bool) -> None:
        if hold:
            self.held.extend(packets)
            return
        try:
            self._output().mux(packets)
        except Exception as exc:
            raise self.fail("encode_error", f"writing video packets failed: {exc}") from exc

    def release_held(self) -> None:
        """Write the packets held back: the audio track is decided."""
        held, self.held = self.held, []
        self.mux(held, hold=False)

    def flush(self) -> list[av.Packet]:
        try:
            return self.stream.encode(None)
        except Exception as exc:
            raise self.fail("encode_error", f"flushing the H.264 encoder failed: {exc}") from exc

    def close(self) -> bytes:
        """The finished mp4."""
        try:
            self._output().close()
        except Exception as exc:
            raise self.fail("encode_error", f"writing the mp4 failed: {exc}") from exc
        return self.buffer.getvalue()

    def abandon(self) -> None:
        """Close the output whatever happened: a no-op after `close`; after a failure, it must not
        mask the failure.
        """
        if self.output is not None:
            with contextlib.suppress(Exception):
                self.output.close()

    def _output(self) -> av.container.OutputContainer:
        if self.output is None:
            raise RuntimeError("the output is not open")
        return self.output

    def _geometry(self) -> FrameGeometry:
        if self.geometry is None:
            raise RuntimeError("the output is not open")
        return self.geometry


class BufferReader:
    """An independent read cursor over a BytesIO that is still being written (for faststart)."""

    def __init__(self, buffer: io.BytesIO) -> None:
        self.buffer = buffer
        self.position = 0

    def read(self, size: int = -1) -> bytes:
        with self.buffer.getbuffer() as view:
            end = len(view) if size is None or size < 0 else min(len(view), self.position + size)
            chunk = bytes(view[self.position : end])
        self.position += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self.position = offset
        elif whence == io.SEEK_CUR:
            self.position += offset
        else:
            self.position = self.buffer.getbuffer().nbytes + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        pass
