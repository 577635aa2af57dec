"""The audio re-encoder: the first audio stream, any codec, to AAC (mono or stereo, the source rate
when AAC supports it, else 48 kHz) on a contiguous timeline starting at its offset from the first
video frame; parameter changes mid-stream are resampled.

Audio never costs the video: any failure drops the track with a warning and the clip goes on (with
the audio up to the failure, or without audio). The output never carries an empty audio track: the
video waits (its packets held) until the first audio frame decodes or the audio is dropped.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import av

if TYPE_CHECKING:
    from collections.abc import Callable

    from av.audio.stream import AudioStream

    from kinetics_assets.media.transcode.timeline import Timeline

AudioState = Literal["absent", "waiting", "on", "off"]
"""absent: no audio wanted; waiting: no frame decoded yet; on; off: dropped."""

_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


class AudioEncoder:
    """One clip's audio track, from the decoded frames of its first audio stream to AAC packets."""

    def __init__(self, *, warnings: list[str], on_decided: Callable[[], None]) -> None:
        self.state: AudioState = "absent"
        self.warnings = warnings  # the clip's, shared with the rest of the transcode
        # Called once the track is decided (on, or dropped while waiting) and the output is open:
        # the video packets held back until then can be written.
        self.on_decided = on_decided
        self.stream: Any = None  # the input stream
        self.bitrate = 0
        self.output: av.container.OutputContainer | None = None
        self.timeline: Timeline | None = None
        self.out: Any = None  # the AAC stream
        self.early: list[av.AudioFrame] = []  # decoded before the first video frame
        self.resampler: av.AudioResampler | None = None
        self.input_key: tuple[str, str, int] | None = None
        self.offset = 0
        self.samples = 0
        self.packets = 0

    @property
    def live(self) -> bool:
        return self.state in ("waiting", "on")

    @property
    def waiting(self) -> bool:
        return self.state == "waiting"

    def start(self, stream: AudioStream, *, bitrate: int) -> None:
        """Take `stream` (the first audio stream) to be re-encoded at `bitrate`."""
        if stream.codec_context is None or not stream.codec_context.codec:
            self.warnings.append("audio dropped: no decoder for the audio codec")
            return
        stream.codec_context.thread_count = 1
        self.stream = stream
        self.bitrate = bitrate
        self.state = "waiting"

    def attach(self, output: av.container.OutputContainer, timeline: Timeline) -> None:
        """The output is open (the first video frame started `timeline`): encode the frames decoded
        before it.
        """
        self.output = output
        self.timeline = timeline
        if self.early:
            early, self.early = self.early, []
            for frame in early:
                self.on_frame(frame)

    def on_frame(self, frame: av.AudioFrame) -> None:
        if not self.live:
            return
        if self.output is None:
            self.early.append(frame)  # no video yet, so no output to put it in
            return
        if self.waiting:
            self._open(frame)
            if self.state != "on":
                return
        try:
            self._encode(frame)
        except Exception as exc:  # noqa: BLE001 - an audio failure drops the audio track, never the clip
            self.drop(f"AAC encoding failed after {self.samples} samples: {exc}")

    def flush(self) -> None:
        try:
            self._encode(None)
            packets = self.out.encode(None)
            self._output().mux(packets)
            self.packets += len(packets)
        except Exception as exc:  # noqa: BLE001 - an audio failure drops the audio track, never the clip
            self.drop(f"flushing the AAC encoder failed: {exc}")

    def drop(self, reason: str) -> None:
        if not self.live:
            return
        was_waiting = self.state == "waiting"
        self.state = "off"
        self.early = []
        self.warnings.append(f"audio dropped: {reason}")
        if was_waiting and self.output is not None:
            self.on_decided()

    def _open(self, frame: av.AudioFrame) -> None:
        try:
            out_rate = frame.sample_rate if frame.sample_rate in _AAC_RATES else 48000
            out_audio = self._output().add_stream("aac", rate=out_rate)
            out_audio.layout = "mono" if frame.layout.nb_channels == 1 else "stereo"
            out_audio.bit_rate = self.bitrate
            out_audio.time_base = Fraction(1, out_rate)
            out_audio.codec_context.thread_count = 1
        except Exception as exc:  # noqa: BLE001 - an audio failure drops the audio track, never the clip
            self.drop(f"cannot set up the AAC encoder: {exc}")
            return
        self.out = out_audio
        self.state = "on"
        # Place the audio where it starts relative to the first video frame (never before 0).
        timeline = self._timeline()
        start = frame.time if frame.time is not None else timeline.start_seconds
        self.offset = max(0, round((start - timeline.start_seconds) * out_rate))
        self.on_decided()

    def _encode(self, frame: av.AudioFrame | None) -> None:
        out = self.out
        if frame is not None:
            key = (frame.format.name, frame.layout.name, frame.sample_rate)
            if key != self.input_key or self.resampler is None:
                # New (or changed) input parameters: drain the old resampler, start a new one.
                if self.resampler is not None:
                    self._encode_resampled(self.resampler.resample(None))
                self.resampler = av.AudioResampler(
                    format="fltp", layout=out.layout.name, rate=out.codec_context.sample_rate
                )
                self.input_key = key
            frame.pts = None  # the timeline is contiguous: pts come from the sample count
            self._encode_resampled(self.resampler.resample(frame))
        elif self.resampler is not None:
            self._encode_resampled(self.resampler.resample(None))

    def _encode_resampled(self, frames: list[av.AudioFrame]) -> None:
        rate = self.out.codec_context.sample_rate
        for frame in frames:
            frame.pts = self.offset + self.samples
            frame.time_base = Fraction(1, rate)
            self.samples += frame.samples
            packets = self.out.encode(frame)
            self._output().mux(packets)
            self.packets += len(packets)

    def _output(self) -> av.container.OutputContainer:
        if self.output is None:
            raise RuntimeError("the output is not open")
        return self.output

    def _timeline(self) -> Timeline:
        if self.timeline is None:
            raise RuntimeError("no video frame has started the timeline yet")
        return self.timeline
