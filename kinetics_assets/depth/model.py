"""Depth Anything V2 inference on video frames: model loading, batched preprocessing, prediction.

Preprocessing is done in torch on the model's device instead of the Hugging Face image processor:
the HF processor's "scale as little as possible" rule feeds a 640x360 frame in at 294x518, while the
model was trained and evaluated (original repository) with the *shorter* side at 518. Doing it in torch
also keeps the whole batch on the GPU and avoids a Pillow round trip per frame.

This module imports neither dagster nor ray: the Ray layer and the Dagster asset call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - PyTorch's conventional alias

from kinetics_assets import hub
from kinetics_assets.depth import DEFAULT_MODEL_ID
from kinetics_assets.hub import WeightsSource, resolve_device

if TYPE_CHECKING:
    import os

# ImageNet statistics, as used by DINOv2 and Depth Anything's training pipeline.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DepthModelConfig:
    """Which depth model to run, where, and at what input size.

    Weights are found by the rules of `kinetics_assets.hub`: `local_path` (a `save_pretrained`
    folder) wins over `model_id`, which is then only the name reported for lineage.
    """

    model_id: str = DEFAULT_MODEL_ID
    revision: str | None = None
    local_path: str | os.PathLike[str] | None = None
    device: str = "auto"  # "auto" -> cuda when available, else cpu; or any torch device string
    dtype: str = "auto"  # "auto" -> float16 on cuda, float32 on cpu; or float32/float16/bfloat16
    input_short_side: int = 518
    batch_size: int = 8
    cache_dir: str | os.PathLike[str] | None = None

    def weights(self) -> WeightsSource:
        return WeightsSource(
            "Depth model", "DepthModelConfig", self.model_id, self.revision, self.local_path, self.cache_dir
        )


class DepthModelUnavailable(Exception):  # noqa: N818 - public name, caught by name in the steps and tests
    """The model's weights are neither on this machine nor reachable on the Hugging Face Hub."""


def model_input_size(height: int, width: int, short_side: int = 518, multiple: int = 14) -> tuple[int, int]:
    """(height, width) a frame is resized to before the forward pass.

    Rule (the original Depth Anything "lower_bound" resize with ensure_multiple_of=14):
      * target short side S = `short_side` rounded half-up to a multiple of `multiple` (518 stays 518),
        at least one multiple;
      * the shorter frame side becomes exactly S;
      * the longer side becomes long * S / short, rounded half-up to a multiple of `multiple`, and
        never below S.
    So 640x360 -> 924x518 (WxH), 360x640 -> 518x924, 100x100 -> 518x518. Both sides are always
    multiples of the ViT patch size, which the model requires, and the aspect ratio is kept within
    half a patch. (The original uses numpy's banker's rounding; the two differ only at exact .5 ties.)
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"frame size must be positive, got height={height} width={width}")
    if short_side <= 0 or multiple <= 0:
        raise ValueError(f"input_short_side and multiple must be positive, got {short_side}, {multiple}")

    def round_to_multiple(x: float) -> int:
        return math.floor(x / multiple + 0.5) * multiple

    target_short = max(multiple, round_to_multiple(short_side))
    scale = target_short / min(height, width)
    if height <= width:
        return target_short, max(target_short, round_to_multiple(width * scale))
    return max(target_short, round_to_multiple(height * scale)), target_short


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """float16 rather than bfloat16 on GPUs: its 11-bit mantissa is finer than the 10-bit depth codec,
    bfloat16's 8 bits are not.
    """
    return hub.resolve_dtype(dtype, device, config_name="DepthModelConfig")


def load_depth_model(config: DepthModelConfig, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Load the weights through `AutoModelForDepthEstimation.from_pretrained` (hub cache or local folder)."""
    from transformers import AutoModelForDepthEstimation

    model = hub.from_pretrained(
        config.weights(), AutoModelForDepthEstimation.from_pretrained, DepthModelUnavailable, dtype=dtype
    )
    return model.to(device).eval()


def check_weights_available(config: DepthModelConfig) -> None:
    """Raise DepthModelUnavailable unless the model can be loaded, without loading its weights."""
    hub.check_available(config.weights(), DepthModelUnavailable)


class DepthEstimator:
    """A loaded depth model: call `predict` on uint8 RGB frames, get relative inverse depth back.

    Loads once at construction; keep one per worker process and reuse it across clips.
    """

    def __init__(self, config: DepthModelConfig | None = None) -> None:
        self.config = config or DepthModelConfig()
        if self.config.batch_size < 1:
            raise ValueError(f"DepthModelConfig.batch_size must be >= 1, got {self.config.batch_size}")
        self.device = resolve_device(self.config.device)
        self.dtype = resolve_dtype(self.config.dtype, self.device)
        self.model = load_depth_model(self.config, self.device, self.dtype)
        self.model_id = self.config.model_id
        self.revision = hub.loaded_revision(self.config.weights())
        self.patch_size = int(getattr(self.model.config, "patch_size", 14))
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return (
            f"DepthEstimator(model_id={self.model_id!r}, revision={self.revision!r}, "
            f"device={str(self.device)!r}, dtype={self.dtype})"
        )

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return model_input_size(height, width, self.config.input_short_side, self.patch_size)

    @torch.inference_mode()
    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 RGB [N,H,W,3] -> normalised [N,3,h,w] on the model's device in the model's dtype.

        Bicubic (align_corners=False, no antialias) then clamp to [0,1]: the same as the original's
        cv2.INTER_CUBIC on uint8, which saturates. ImageNet mean/std normalisation.
        """
        batch = _as_frame_tensor(frames).to(self.device, non_blocking=True)
        _, height, width, _ = batch.shape
        size = self.input_size(height, width)
        x = batch.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        if (height, width) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
        x = (x - self._mean) / self._std
        return x.to(self.dtype).contiguous()

    @torch.inference_mode()
    def infer(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The bare forward pass on a preprocessed batch: [N,3,h,w] -> [N,h,w] at the input size."""
        return self.model(pixel_values=pixel_values).predicted_depth

    @torch.inference_mode()
    def predict(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB [N,H,W,3] -> float32 [N,H,W] relative inverse depth (bigger = nearer).

        Runs in batches of `batch_size`; the prediction is resized back to the frame size (bilinear).
        """
        frames = np.asarray(frames)
        _check_frames_shape(frames)
        n, height, width, _ = frames.shape
        out = np.empty((n, height, width), dtype=np.float32)
        step = self.config.batch_size
        for start in range(0, n, step):
            depth = self.infer(self.preprocess(frames[start : start + step]))
            depth = F.interpolate(
                depth.unsqueeze(1).to(torch.float32), size=(height, width), mode="bilinear", align_corners=False
            ).squeeze(1)
            out[start : start + step] = depth.cpu().numpy()
        return out


_FRAMES_NDIM = 4  # [N, H, W, C]
_RGB_CHANNELS = 3


def _check_frames_shape(frames: np.ndarray | torch.Tensor) -> None:
    if frames.ndim != _FRAMES_NDIM or frames.shape[-1] != _RGB_CHANNELS:
        raise ValueError(f"frames must be RGB [N,H,W,3], got shape {tuple(frames.shape)}")
    is_uint8 = frames.dtype == torch.uint8 if isinstance(frames, torch.Tensor) else frames.dtype == np.uint8
    if not is_uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")


def _as_frame_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor):
        frames = np.asarray(frames)
        _check_frames_shape(frames)
        array = np.ascontiguousarray(frames)
        if not array.flags.writeable:  # a zero-copy view of Ray's object store; torch needs writable memory
            array = array.copy()  # one batch, a few MB
        return torch.from_numpy(array)
    _check_frames_shape(frames)
    return frames
