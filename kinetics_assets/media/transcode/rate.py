"""The rate plan: a cap that keeps the output from outgrowing its source (BENCHMARKS.md, "Rate
cap"). The source's bitrate times `max_bitrate_ratio`, less the output's audio, is the video's
budget, held by x264's VBV `maxrate`; the AAC bitrate never exceeds the source's audio bitrate.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import av
import av.error

if TYPE_CHECKING:
    import os
    from collections.abc import Callable
    from fractions import Fraction

    from kinetics_assets.media.transcode.config import TranscodeConfig

# Rate cap: never below this (a cap under it costs more quality than it saves bytes), a 1 s buffer.
MIN_VIDEO_MAXRATE = 64_000
VBV_BUFFER_S = 1.0
MIN_AUDIO_BITRATE = 32_000


@dataclass(frozen=True)
class RatePlan:
    """The output's audio bitrate and the video's VBV cap (None: CRF only)."""

    audio_bitrate: int
    video_maxrate: int | None


def plan_rates(
    container: av.container.InputContainer,
    *,
    size: int,
    config: TranscodeConfig,
    packet_seconds: Callable[[], float],
) -> RatePlan:
    """Output audio bitrate and the video's VBV cap, from the source's header bitrate.

    `size` is the whole file's; `packet_seconds` times a source whose headers carry no duration.
    """
    audio_bitrate = config.audio_bitrate
    if container.streams.audio:
        source_audio = container.streams.audio[0].bit_rate or 0
        if source_audio > 0:
            audio_bitrate = min(config.audio_bitrate, max(MIN_AUDIO_BITRATE, source_audio))
    if config.max_bitrate_ratio is None:
        return RatePlan(audio_bitrate=audio_bitrate, video_maxrate=None)
    seconds = container.duration / av.time_base if container.duration else 0.0
    if not seconds > 0:
        seconds = packet_seconds()
    if not seconds > 0:
        return RatePlan(audio_bitrate=audio_bitrate, video_maxrate=None)
    budget = config.max_bitrate_ratio * size * 8 / seconds
    if container.streams.audio:
        budget -= audio_bitrate
    # The VBV buffer starts full, so a clip may spend maxrate * seconds + buffer: keep that within
    # the budget (buffer = maxrate * VBV_BUFFER_S).
    maxrate = budget * seconds / (seconds + VBV_BUFFER_S)
    return RatePlan(audio_bitrate=audio_bitrate, video_maxrate=max(MIN_VIDEO_MAXRATE, int(maxrate)))


def packet_seconds(
    data: bytes | str | os.PathLike[str],
    *,
    stream_index: int,
    rate: Fraction,
    check_deadline: Callable[[], None],
) -> float:
    """Duration of a stream whose headers have none (raw Annex B): video packets / nominal rate.

    A demux-only pass (no decoding): a small fraction of the transcode's cost, paid by such
    streams only. 0.0 when it cannot be had.
    """
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            source: Any = io.BytesIO(bytes(data))
        else:
            source = str(data)
        with av.open(source, mode="r") as container:
            stream = container.streams[stream_index]
            packets = 0
            for packet in container.demux(stream):
                packets += packet.size > 0
                if packets % 256 == 0:
                    check_deadline()
        return packets / float(rate)
    except (av.error.FFmpegError, IndexError, OSError):
        return 0.0
