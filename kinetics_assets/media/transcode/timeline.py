"""The output timeline: one strictly increasing timestamp per decoded frame, chosen as FFmpeg's
best-effort timestamp chooses it, and a constant-rate timeline for streams without timestamps.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import av

# Largest time base denominator we hand to x264/the muxer unchanged (x264 stores it in 32 bits).
_MAX_TIME_BASE_DEN = 2**31 - 1


class Timeline:
    """Gives every decoded frame a strictly increasing timestamp, starting at 0, in `time_base`.

    Mirrors FFmpeg's best-effort timestamp: use pts unless pts has gone backwards more often than dts
    (e.g. packed B-frames in AVI label frames with reordered pts). Frames are observed LOOKAHEAD
    frames before they are stamped, so the first fault already corrects the frame before it.
    Streams without any timestamps (raw Annex B) get frame index / nominal rate.
    """

    LOOKAHEAD = 2

    def __init__(self, first_frame: av.VideoFrame, rate: Fraction) -> None:
        self.rate = rate
        src_tb = first_frame.time_base
        self.synthetic = (first_frame.pts is None and first_frame.dts is None) or src_tb is None
        if self.synthetic or src_tb is None:
            self.time_base = Fraction(1) / rate
            self.source_time_base = self.time_base
        else:
            self.source_time_base = Fraction(src_tb)
            tb = self.source_time_base
            if tb.denominator > _MAX_TIME_BASE_DEN or (tb.numerator != 1 and tb > Fraction(1, 10)):
                tb = Fraction(1, 90000)
            self.time_base = tb
        self.step = max(1, round(1 / (rate * self.time_base)))  # nominal frame duration in ticks
        self._last_pts: int | None = None
        self._last_dts: int | None = None
        self._faulty_pts = 0
        self._faulty_dts = 0
        # Each source is shifted by its own first value: in an AVI with packed B-frames the decoder
        # delay puts dts ticks ahead of pts, and the stream switches from pts to dts after the first
        # reordered frame (one shared start gave 0, 2, 3, ...).
        self._start_pts: int | None = None
        self._start_dts: int | None = None
        self._start: int | None = None  # start of the source the first frame was stamped from
        self.last: int | None = None
        self.last_duration = self.step

    def _to_out(self, value: int) -> int:
        if self.time_base == self.source_time_base:
            return value
        return round(value * self.source_time_base / self.time_base)

    def observe(self, frame: av.VideoFrame) -> None:
        """Count timestamp faults in decode order (call for each frame as it leaves the decoder)."""
        pts, dts = frame.pts, frame.dts
        if self.synthetic:
            return
        if pts is not None and self._start_pts is None:
            self._start_pts = self._to_out(pts)
        if dts is not None and self._start_dts is None:
            self._start_dts = self._to_out(dts)
        if dts is not None:
            self._faulty_dts += self._last_dts is not None and dts <= self._last_dts
            self._last_dts = dts
        if pts is not None:
            self._faulty_pts += self._last_pts is not None and pts <= self._last_pts
            self._last_pts = pts

    def stamp(self, frame: av.VideoFrame) -> int:
        """The output timestamp of the next frame in display order."""
        if self.synthetic:
            ts = 0 if self.last is None else self.last + self.step
        else:
            pts, dts = frame.pts, frame.dts
            use_pts = pts is not None and (dts is None or self._faulty_pts <= self._faulty_dts)
            chosen = pts if use_pts else dts
            if chosen is None:
                ts = 0 if self.last is None else self.last + self.step
            else:
                start = self._start_pts if use_pts else self._start_dts
                if start is None:  # a frame stamped without being observed
                    start = self._to_out(chosen)
                if self._start is None:
                    self._start = start
                ts = self._to_out(chosen) - start
            if self.last is not None and ts <= self.last:
                ts = self.last + self.step
            if frame.duration and frame.duration > 0:
                self.last_duration = max(1, self._to_out(frame.duration))
            elif self.last is not None:
                self.last_duration = ts - self.last
        self.last = ts
        return ts

    @property
    def start_seconds(self) -> float:
        """Source time of the first frame, in seconds (to place audio relative to it)."""
        if self.synthetic or self._start is None:
            return 0.0
        return float(self._start * self.time_base)

    @property
    def duration_ticks(self) -> int:
        return 0 if self.last is None else self.last + self.last_duration
