"""Video in and out with PyAV, numpy and PIL: the transcode engine, opening and decoding stored videos,
frame sampling, the depth codec, the frame-beside-depth preview. No Dagster, no Ray, no table.

The public names below load their module on first use, so importing the package (as the code
location does, for the engines' settings) costs nothing beyond what is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kinetics_assets.lazy import lazy_exports

if TYPE_CHECKING:
    from kinetics_assets.media.decode import decode_frames, frame_timestamps
    from kinetics_assets.media.depth_codec import DepthEncoding, decode_depth, encode_depth
    from kinetics_assets.media.sampling import ClipSampling, FrameSampling
    from kinetics_assets.media.transcode import TranscodeConfig, TranscodeError, transcode

_EXPORTS = {
    "decode_frames": "decode",
    "frame_timestamps": "decode",
    "DepthEncoding": "depth_codec",
    "decode_depth": "depth_codec",
    "encode_depth": "depth_codec",
    "ClipSampling": "sampling",
    "FrameSampling": "sampling",
    "TranscodeConfig": "transcode",
    "TranscodeError": "transcode",
    "transcode": "transcode",
}
__all__ = [
    "ClipSampling",
    "DepthEncoding",
    "FrameSampling",
    "TranscodeConfig",
    "TranscodeError",
    "decode_depth",
    "decode_frames",
    "encode_depth",
    "frame_timestamps",
    "transcode",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
