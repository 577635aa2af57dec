"""A tiny, randomly initialised Depth Anything V2 saved with `save_pretrained`.

Tests load it through the same `from_pretrained` path production uses, so they exercise the real
loading, preprocessing and forward code without downloading the 25 M-parameter checkpoint. The demo
falls back to it, loudly and on the record, when the real weights cannot be had. Its output is not
depth.
The architecture is Depth Anything V2's (DINOv2 backbone, patch 14, features taken from evenly spaced
layers as V2 does, DPT-style neck and head), only narrower and shallower.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

from kinetics_assets.hub import has_random_weights, mark_random_weights, saved_once

__all__ = [  # has_random_weights too: callers ask the model's own module
    "build_tiny_depth_model",
    "calibrate_random_head",
    "depth_anything_v2_small_config",
    "has_random_weights",
    "save_random_depth_model",
    "save_tiny_depth_model",
    "tiny_depth_config",
]


def tiny_depth_config() -> DepthAnythingConfig:
    backbone = Dinov2Config(  # type: ignore[call-arg]  # out_indices is a backbone kwarg its stub leaves out
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=518,
        patch_size=14,
        # V2 takes features from evenly spaced layers ([3, 6, 9, 12] of 12); V1's default is the last 4.
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=32,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type="relative",
    )


def depth_anything_v2_small_config() -> DepthAnythingConfig:
    """The Depth-Anything-V2-Small-hf architecture (24.8 M parameters), for benchmarks with random weights."""
    backbone = Dinov2Config(  # type: ignore[call-arg]  # out_indices is a backbone kwarg its stub leaves out
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        mlp_ratio=4,
        image_size=518,
        patch_size=14,
        out_indices=[3, 6, 9, 12],
        reshape_hidden_states=False,
    )
    return DepthAnythingConfig(backbone_config=backbone, patch_size=14, depth_estimation_type="relative")


def calibrate_random_head(model: DepthAnythingForDepthEstimation, seed: int = 0) -> DepthAnythingForDepthEstimation:
    """Make a randomly initialised model output O(1), mostly positive, input-dependent values.

    With the default init (std 0.02) the head outputs ~1e-7 and the final ReLU zeroes much of it.
    So: Kaiming-init the neck and head convolutions (activations keep their scale), then calibrate the
    last 1x1 conv on a fixed random image so its pre-ReLU output is about N(1, 0.3).
    """
    with torch.no_grad():
        for module in [*model.neck.modules(), *model.head.modules()]:
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        calibration = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 1234))
        captured: list[torch.Tensor] = []
        hook = model.head.conv3.register_forward_hook(lambda _m, _i, out: captured.append(out))
        model(pixel_values=calibration)
        hook.remove()
        pre_relu = captured[0]
        gain = 0.3 / float(pre_relu.std())
        conv3 = model.head.conv3
        if conv3.bias is None:
            raise TypeError("the depth head's last convolution has no bias to shift")
        conv3.weight.mul_(gain)
        conv3.bias.copy_((conv3.bias - pre_relu.mean()) * gain + 1.0)
    return model


def build_tiny_depth_model(seed: int = 0) -> DepthAnythingForDepthEstimation:
    """Seeded random tiny model whose output varies (see `calibrate_random_head`)."""
    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(tiny_depth_config()).eval()
    return calibrate_random_head(model, seed)


def save_tiny_depth_model(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny model and `save_pretrained` it into `folder`; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_tiny_depth_model(seed)
    mark_random_weights(model.config)  # saved in config.json: whoever loads it can tell
    model.save_pretrained(folder)
    return folder


def save_random_depth_model(folder: str | Path) -> Path:
    """The demo's stand-in model, saved once into `folder` and reused."""
    return saved_once(folder, save_tiny_depth_model)
