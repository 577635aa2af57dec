"""Transcode one video clip to a small, seekable, training-friendly H.264 mp4 (PyAV only).

One call handles one clip, synchronously, on one core: decode -> one swscale pass per frame -> libx264,
streamed frame by frame so memory stays flat whatever the clip length. The caller (a Ray task) runs one
of these per CPU, which is why every codec runs single-threaded by default.

Decisions worth knowing (each one is tested in tests/media/test_transcode.py):

- Geometry: the output keeps the source's *display* aspect ratio: non-square pixels (SAR) become
  square and the display rotation (display matrix, 90/180/270) is applied so the picture is upright.
  The shorter display side becomes `short_side` (default 360); sources already smaller are never
  upscaled, only made square-pixel. Both sides are even (yuv420p needs it).
- Resolution changes mid-stream: the output size is chosen from the dominant size (the one most
  frames have; the larger on a tie), and every frame is scaled to fit inside it with its own display
  aspect kept and padded black (letterbox or pillarbox), centred. Nothing is stretched. This needs the
  sizes in advance, so the first pass stops encoding at the first change, decodes on to count the
  sizes, and a second pass encodes: only such clips pay for a second decode. The sizes seen and the
  number of changes are in `SourceInfo.sizes` / `size_changes`.
- Colour: always 8-bit yuv420p, limited (tv) range, whatever comes in (10-bit, 4:4:4, yuvj / full
  range), converted in the same swscale pass as the resize. The YUV matrix is kept (no BT.601 <->
  BT.709 conversion); matrix, primaries and transfer tags are copied, untagged stays untagged, and
  an RGB source is converted with, and tagged as, BT.709 (HD sizes) or BT.601 (`output_matrix`). The
  limited-range flag is always written: x264 writes it only in a signal-type block, which an
  untagged output gets from `videoformat=component`; without it an AV1/VP9 source's "limited" read
  back as unspecified.
- Time: every decoded frame is encoded once with its own timestamp (VFR stays VFR; nothing dropped or
  duplicated). Timestamps are chosen like FFmpeg's best-effort timestamp (pts, or dts when pts proves
  less reliable, e.g. packed B-frames in AVI), each source shifted by its own first value (so a
  stream that switches from pts to dts keeps a regular timeline) and forced strictly increasing.
  Streams with no timestamps at all (raw Annex B H.264/HEVC) get a constant-rate timeline at the
  stream's rate, which FFmpeg reports as 25 fps when the bitstream does not say otherwise.
- Size: CRF sets the quality, and a rate cap keeps the output from outgrowing its source (measured
  in BENCHMARKS.md, "Rate cap"). When the source's duration is known from its headers, its bitrate
  (whole file) times `max_bitrate_ratio` (1.0) less the output's audio bitrate is the video's budget,
  and x264's VBV `maxrate` is set so that budget holds with its 1 s buffer starting full (maxrate =
  budget * d / (d + 1) for d seconds; floor 64 kb/s); it only binds where CRF would spend more than
  the source had; AAC is encoded at the source's audio bitrate when that is lower than `audio_bitrate` (not below
  32 kb/s). A source whose headers carry no duration (raw streams) is timed by a demux-only pass
  (packets / rate). The source's and the output's bitrates and the cap are reported with the result.
- Keyframes: a keyframe every `keyframe_interval_s` (x264 keyint and min-keyint from the average frame
  rate; source picture types are not passed on); scene cuts may add more. `moov` is in front
  (faststart), written entirely in memory.
- Audio: the first audio stream, any codec, is re-encoded to AAC (mono or stereo, the source rate when
  AAC supports it, else 48 kHz) on a contiguous timeline starting at its offset from the first video
  frame; parameter changes mid-stream are resampled. Audio never costs the video: undecodable audio
  packets are skipped and counted, and if no audio frame decodes at all (or the AAC encoder fails) the
  clip is kept without audio (or with the audio up to the failure) and a warning says so. The output
  never carries an empty audio track: video packets wait in memory until the first audio frame decodes.
- Damage: packets that fail to demux or decode (video or audio) are counted (`decode_errors`) and
  skipped, and a clip that ends early is kept with a warning; the clip fails with `decode_error` (or
  `truncated`) only when no video frame at all could be decoded.

The package's modules follow those seams: config.py (settings, result, the error), source.py (opening
the input), geometry.py, timeline.py, rate.py (the rate plan), video_encoder.py and audio_encoder.py
(the two re-encoders), engine.py (the decode loop that drives them).
"""

from kinetics_assets.media.transcode.config import (
    ERROR_KINDS,
    Preset,
    SourceInfo,
    TranscodeConfig,
    TranscodeError,
    TranscodeResult,
)
from kinetics_assets.media.transcode.engine import probe, release_av_cycles, transcode
from kinetics_assets.media.transcode.geometry import output_size
from kinetics_assets.media.transcode.video_encoder import output_matrix

__all__ = [
    "ERROR_KINDS",
    "Preset",
    "SourceInfo",
    "TranscodeConfig",
    "TranscodeError",
    "TranscodeResult",
    "output_matrix",
    "output_size",
    "probe",
    "release_av_cycles",
    "transcode",
]
