"""Video in and out with PyAV, numpy and PIL: the transcode engine, opening and decoding stored videos,
frame sampling, the depth codec, the frame-beside-depth preview. No Dagster, no Ray, no table.

The public names below load their module on first use, so importing the package (as the code
location does, for the engines' settings) costs nothing beyond what is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whichever public name is asked for
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
