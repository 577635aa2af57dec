"""The tiny random Depth Anything used by tests (it lives in the package: the demo uses it too)."""

from kinetics_assets.depth.random_model import (
    build_tiny_depth_model,
    calibrate_random_head,
    depth_anything_v2_small_config,
    save_tiny_depth_model,
    tiny_depth_config,
)

TINY_MODEL_ID = "tests/tiny-depth-anything-v2"

__all__ = [
    "TINY_MODEL_ID",
    "build_tiny_depth_model",
    "calibrate_random_head",
    "depth_anything_v2_small_config",
    "save_tiny_depth_model",
    "tiny_depth_config",
]
