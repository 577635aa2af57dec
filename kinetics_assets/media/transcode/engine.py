"""The transcode engine: one clip, synchronously, on one core. It drives the decode (demuxing,
decoding and skipping damage, the limits and the deadline) and hands each frame to the geometry,
the timeline and the encoders; a clip whose frame size changes is encoded in a second pass.
"""

from __future__ import annotations

import collections
import gc
import time
from typing import TYPE_CHECKING, Any

import av
import av.error

from kinetics_assets.media.transcode.audio_encoder import AudioEncoder
from kinetics_assets.media.transcode.config import SourceInfo, TranscodeConfig, TranscodeError, TranscodeResult
from kinetics_assets.media.transcode.geometry import FrameGeometry
from kinetics_assets.media.transcode.rate import RatePlan, packet_seconds, plan_rates
from kinetics_assets.media.transcode.source import nominal_rate, open_input, sar_of
from kinetics_assets.media.transcode.timeline import Timeline
from kinetics_assets.media.transcode.video_encoder import VideoEncoder

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator
    from fractions import Fraction

    from av.video.stream import VideoStream

__all__ = ["probe", "release_av_cycles", "transcode"]

# FFmpeg's `max_pixels` decoder option is an int.
_MAX_FFMPEG_INT = 2**31 - 1


def transcode(
    data: bytes | str | os.PathLike[str],
    config: TranscodeConfig = TranscodeConfig(),
    *,
    name: str = "",
) -> TranscodeResult:
    """Transcode one clip (bytes or a path) to H.264/AAC mp4; raises TranscodeError only."""
    cpu_start = time.process_time()
    try:
        try:
            return _Transcode(data, config, name).run(cpu_start)
        except _SizesChangeError as change:
            release_av_cycles()  # the second pass shares the first one's timeout_s budget
            return _Transcode(
                data, config, name, canvas=change.canvas, size_sars=change.sars, deadline=change.deadline
            ).run(cpu_start)
    except TranscodeError:
        raise
    except MemoryError as exc:
        raise TranscodeError("limit_exceeded", f"out of memory ({exc})", name=name) from exc
    except Exception as exc:  # anything unforeseen still leaves as a TranscodeError
        raise TranscodeError("decode_error", f"{type(exc).__name__}: {exc}", name=name) from exc
    finally:
        release_av_cycles()


def release_av_cycles() -> None:
    """Free the clip's PyAV objects now. PyAV containers, streams and filter graphs form reference
    cycles that hold decoded frames and codec buffers; left to Python's allocation-count GC, a worker
    reached 288 MiB after 25 eight-second clips instead of 26 MiB (BENCHMARKS.md). The cycles are
    young, so a generation-1 collection (~0.03 ms) finds them.
    """
    gc.collect(1)


def probe(
    data: bytes | str | os.PathLike[str],
    *,
    name: str = "",
    config: TranscodeConfig = TranscodeConfig(),
) -> SourceInfo:
    """Describe a clip by fully decoding its video (no encoding); raises TranscodeError only."""
    try:
        return _Transcode(data, config, name, encode=False).run(time.process_time()).source
    except TranscodeError:
        raise
    except Exception as exc:
        raise TranscodeError("decode_error", f"{type(exc).__name__}: {exc}", name=name) from exc


class _SizesChangeError(Exception):
    """Raised by a first pass that found frames of more than one size: encode again on `canvas`."""

    def __init__(self, canvas: tuple[int, int], sars: dict[tuple[int, int], Fraction], deadline: float) -> None:
        super().__init__(f"frame size changes mid-stream; output canvas {canvas[0]}x{canvas[1]}")
        self.canvas = canvas
        self.sars = sars
        self.deadline = deadline


class _Transcode:
    """One transcode (or, with encode=False, one probe) of one clip; single use.

    With `canvas` (display-oriented output size) every frame is fitted into it and padded: the second
    pass of a clip whose frame size changes.
    """

    def __init__(
        self,
        data: bytes | str | os.PathLike[str],
        config: TranscodeConfig,
        name: str,
        *,
        encode: bool = True,
        canvas: tuple[int, int] | None = None,
        size_sars: dict[tuple[int, int], Fraction] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.data = data
        self.config = config
        self.name = name
        self.encode = encode
        self.canvas = canvas
        self.size_sars = size_sars
        self.counting_only = False  # a first pass that saw a size change only counts from then on
        self.deadline = time.monotonic() + config.timeout_s if deadline is None else deadline
        self.warnings: list[str] = []
        self.decode_errors = 0
        self.frames = 0
        self.demux_failed = False
        self.timeline: Timeline | None = None
        self.video_pending: collections.deque[av.VideoFrame] = collections.deque()
        self.first_frame: dict[str, Any] = {}
        self.keyint = 0
        self.video = VideoEncoder(config, name)
        self.audio = AudioEncoder(warnings=self.warnings, on_decided=self.video.release_held)

    def fail(self, kind: str, message: str) -> TranscodeError:
        return TranscodeError(kind, message, name=self.name)

    # -- driver ------------------------------------------------------------------------------------

    def run(self, cpu_start: float) -> TranscodeResult:
        container, self.size = open_input(self.data, self.name)
        try:
            with container:
                self._select_streams(container)
                for kind, frame in self._decoded(container):
                    if kind == "video":
                        self._on_video(frame)
                    elif not self.counting_only:
                        self.audio.on_frame(frame)
                if self.counting_only:
                    raise _SizesChangeError(self.geometry.canvas_of_sizes(), self.geometry.size_sars, self.deadline)
                while self.video_pending:
                    self._emit_video(self.video_pending.popleft())
                if self.frames == 0:
                    if self.demux_failed:
                        raise self.fail("truncated", "the file ends before any video frame could be decoded")
                    raise self.fail(
                        "decode_error",
                        f"no decodable video frame ({self.decode_errors} packets failed to decode)",
                    )
                declared = self.vstream.frames
                if declared and self.frames < declared - 1:
                    self.warnings.append(f"input ends early: {self.frames} of {declared} declared frames decoded")
                video = self._finish() if self.encode else b""
        finally:
            self.video.abandon()
        return self._result(video, time.process_time() - cpu_start)

    def _select_streams(self, container: av.container.InputContainer) -> None:
        video_streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not video_streams:
            if container.streams.audio:
                raise self.fail("no_video_stream", f"{container.format.name} file has audio but no video")
            raise self.fail("not_a_video", f"{container.format.name} file has no video stream")
        vstream = video_streams[0]
        vctx = vstream.codec_context
        if vctx is None or not vctx.codec:
            raise self.fail("decode_error", f"no decoder for the video codec of stream #{vstream.index}")
        vctx.thread_count = self.config.threads
        if self.config.max_pixels_per_frame is not None:
            # FFmpeg then refuses to allocate a larger picture (an in-band SPS can switch a "16x16"
            # stream to 16384x16384): the check in _on_video would only see it after allocation.
            vctx.options = {**vctx.options, "max_pixels": str(min(self.config.max_pixels_per_frame, _MAX_FFMPEG_INT))}
        self.vstream = vstream
        self.source_has_audio = bool(container.streams.audio)
        self.container_name = container.format.name
        self.rate = nominal_rate(vstream)
        self.geometry = FrameGeometry(
            sar=sar_of(vstream), short_side=self.config.short_side, canvas=self.canvas, size_sars=self.size_sars
        )
        self._check_header_limits(container, vstream)
        self.rates: RatePlan = plan_rates(
            container, size=self.size, config=self.config, packet_seconds=self._packet_seconds
        )
        if self.encode and container.streams.audio:
            self.audio.start(container.streams.audio[0], bitrate=self.rates.audio_bitrate)

    def _packet_seconds(self) -> float:
        return packet_seconds(
            self.data, stream_index=self.vstream.index, rate=self.rate, check_deadline=self._check_deadline
        )

    def _check_header_limits(self, container: av.container.InputContainer, vstream: VideoStream) -> None:
        cfg = self.config
        if cfg.max_pixels_per_frame is not None and vstream.width * vstream.height > cfg.max_pixels_per_frame:
            raise self.fail(
                "limit_exceeded",
                f"frame size {vstream.width}x{vstream.height} exceeds max_pixels_per_frame={cfg.max_pixels_per_frame}",
            )
        if cfg.max_duration_s is not None and container.duration is not None:
            seconds = container.duration / av.time_base
            if seconds > cfg.max_duration_s:
                raise self.fail(
                    "limit_exceeded",
                    f"declared duration {seconds:.1f} s exceeds max_duration_s={cfg.max_duration_s}",
                )
        if cfg.max_frames is not None and vstream.frames and vstream.frames > cfg.max_frames:
            raise self.fail("limit_exceeded", f"declared {vstream.frames} frames exceed max_frames={cfg.max_frames}")

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise self.fail(
                "timeout",
                f"not finished after timeout_s={self.config.timeout_s} ({self.frames} frames decoded)",
            )

    # -- decoding ----------------------------------------------------------------------------------

    def _decoded(self, container: av.container.InputContainer) -> Iterator[tuple[str, Any]]:
        streams = [self.vstream] + ([self.audio.stream] if self.audio.stream is not None else [])
        packets = container.demux(streams)
        while True:
            self._check_deadline()
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                # A damaged or cut container: keep what was decoded, flush the decoders below.
                self.demux_failed = True
                self.decode_errors += 1
                self.warnings.append(f"input ends early or is damaged: {exc}")
                break
            if packet.stream is self.vstream:
                for frame in self._decode_video(packet):
                    yield "video", frame
            elif self.audio.live:
                for audio_frame in self._decode_audio(packet):
                    yield "audio", audio_frame
        if self.demux_failed:
            yield from self._drained()

    def _drained(self) -> Iterator[tuple[str, Any]]:
        """demux() sends no flush packets after an error: drain the decoders ourselves."""
        for frame in self._decode_video(None):
            yield "video", frame
        if self.audio.live:
            for audio_frame in self._decode_audio(None):
                yield "audio", audio_frame

    def _decode_video(self, packet: av.Packet | None) -> list[av.VideoFrame]:
        ctx = self.vstream.codec_context
        try:
            return ctx.decode(packet)
        except av.error.FFmpegError:
            limit = self.config.max_pixels_per_frame
            if limit is not None and ctx.width * ctx.height > limit:
                # The decoder refused the picture because of `max_pixels`: the clip is over the
                # limit, not merely damaged (skipping those frames would hide the bomb).
                raise self.fail(
                    "limit_exceeded",
                    f"the stream switches to {ctx.width}x{ctx.height} frames after {self.frames} decoded frames, "
                    f"over max_pixels_per_frame={limit}",
                ) from None
            self.decode_errors += 1
            return []

    def _decode_audio(self, packet: av.Packet | None) -> list[av.AudioFrame]:
        try:
            return self.audio.stream.codec_context.decode(packet)
        except av.error.InvalidDataError:
            self.decode_errors += 1
            return []
        except av.error.FFmpegError as exc:
            self.audio.drop(f"audio decoder failed: {exc}")
            return []

    # -- video -------------------------------------------------------------------------------------

    def _on_video(self, frame: av.VideoFrame) -> None:
        cfg = self.config
        if cfg.max_pixels_per_frame is not None and frame.width * frame.height > cfg.max_pixels_per_frame:
            raise self.fail(
                "limit_exceeded",
                f"frame {self.frames} is {frame.width}x{frame.height}, over max_pixels_per_frame="
                f"{cfg.max_pixels_per_frame}",
            )
        self.geometry.count(frame, self.vstream.codec_context)
        if self.timeline is None:
            self._start_video(frame)
        self.frames += 1
        if cfg.max_frames is not None and self.frames > cfg.max_frames:
            raise self.fail("limit_exceeded", f"more than max_frames={cfg.max_frames} frames")
        if self.geometry.size_changes and self.encode and self.geometry.canvas is None:
            self.counting_only = True  # the output size depends on every size: a second pass encodes
        if self.counting_only:
            return
        self._timeline().observe(frame)
        self.video_pending.append(frame)
        if len(self.video_pending) > Timeline.LOOKAHEAD:
            self._emit_video(self.video_pending.popleft())

    def _timeline(self) -> Timeline:
        """The timeline, which the first video frame starts."""
        if self.timeline is None:
            raise RuntimeError("no video frame has started the timeline yet")
        return self.timeline

    def _start_video(self, frame: av.VideoFrame) -> None:
        self.timeline = timeline = Timeline(frame, self.rate)
        self.geometry.start(frame)
        self.first_frame = {"pix_fmt": frame.format.name, "width": frame.width, "height": frame.height}
        self.keyint = max(1, round(float(self.rate) * self.config.keyframe_interval_s))
        if self.encode:
            output = self.video.open(
                frame,
                geometry=self.geometry,
                rate=self.rate,
                time_base=timeline.time_base,
                keyint=self.keyint,
                maxrate=self.rates.video_maxrate,
            )
            self.audio.attach(output, timeline)

    def _emit_video(self, frame: av.VideoFrame) -> None:
        cfg = self.config
        timeline = self._timeline()
        ts = timeline.stamp(frame)
        if cfg.max_duration_s is not None and float(ts * timeline.time_base) > cfg.max_duration_s:
            raise self.fail("limit_exceeded", f"runs past max_duration_s={cfg.max_duration_s}")
        if self.encode:
            self._mux_video(self.video.encode(frame, ts))

    def _mux_video(self, packets: list[av.Packet]) -> None:
        # The stream list is fixed once the header is written, so video waits until we know
        # whether an audio track will exist.
        self.video.mux(packets, hold=self.audio.waiting)

    def _finish(self) -> bytes:
        flushed = self.video.flush()
        if self.audio.waiting:
            self.audio.drop("no audio frame could be decoded")
        self._mux_video(flushed)
        if self.audio.state == "on":
            self.audio.flush()
        return self.video.close()

    # -- result ------------------------------------------------------------------------------------

    def _result(self, video: bytes, cpu_seconds: float) -> TranscodeResult:
        timeline = self._timeline()
        geometry = self.geometry
        duration_s = float(timeline.duration_ticks * timeline.time_base)
        fps = self.frames / duration_s if duration_s > 0 else float(self.rate)
        vctx = self.vstream.codec_context
        source = SourceInfo(
            codec=vctx.codec.canonical_name,
            pix_fmt=self.first_frame["pix_fmt"],
            width=self.first_frame["width"],
            height=self.first_frame["height"],
            sar=f"{geometry.sar.numerator}:{geometry.sar.denominator}",
            rotation=geometry.rotation,
            fps=fps,
            duration_s=duration_s,
            frames=self.frames,
            bytes=self.size,
            has_audio=self.source_has_audio,
            container=self.container_name,
            sizes=tuple((w, h, n) for (w, h), n in geometry.size_counts.items()),
            size_changes=geometry.size_changes,
            bitrate=round(self.size * 8 / duration_s) if duration_s > 0 else None,
        )
        if self.decode_errors:
            self.warnings.append(f"{self.decode_errors} damaged packets skipped")
        if geometry.size_changes:
            seen = ", ".join(f"{w}x{h}" for w, h in geometry.size_counts)
            self.warnings.append(
                f"frame size changes {geometry.size_changes} times ({seen}): fitted into "
                f"{geometry.out_w}x{geometry.out_h}, padded"
            )
        return TranscodeResult(
            video=video,
            source=source,
            width=geometry.out_w,
            height=geometry.out_h,
            fps=fps,
            duration_s=duration_s,
            frames=self.frames,
            bytes=len(video),
            cpu_seconds=cpu_seconds,
            keyframe_interval_frames=self.keyint,
            has_audio=self.audio.packets > 0,
            decode_errors=self.decode_errors,
            warnings=tuple(self.warnings),
            bitrate=round(len(video) * 8 / duration_s) if duration_s > 0 and video else None,
            video_maxrate=self.rates.video_maxrate if self.encode else None,
        )
