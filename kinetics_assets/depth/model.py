"""Depth Anything V2 inference on video frames: model loading, batched preprocessing, prediction.

Preprocessing is done in torch on the model's device instead of the Hugging Face image processor:
the HF processor's "scale as little as possible" rule feeds a 640x360 frame in at 294x518, while the
model was trained and evaluated (original repository) with the *shorter* side at 518. Doing it in torch
also keeps the whole batch on the GPU and avoids a Pillow round trip per frame.

This module imports neither dagster nor ray: the Ray layer and the Dagster asset call it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_MODEL_ID = "depth-anything/Depth-Anything-V2-Small-hf"

# ImageNet statistics, as used by DINOv2 and Depth Anything's training pipeline.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

log = logging.getLogger(__name__)

# Seconds the Hub (or the proxy in front of it) has to accept a TCP connection before this process
# treats it as unreachable and uses the local cache only; huggingface_hub would otherwise retry a dead
# endpoint for ~25 s per file (5 retries, 1-8 s apart) before transformers gives up.
HUB_PROBE_TIMEOUT_S = float(os.environ.get("KINETICS_HUB_PROBE_TIMEOUT_S", "3"))
# A probe's answer is reused for this long, so the check and the load in one process probe once.
_HUB_PROBE_TTL_S = 300.0
_hub_probes: dict[str, tuple[float, str | None]] = {}


@dataclass(frozen=True)
class DepthModelConfig:
    """Which depth model to run, where, and at what input size.

    `local_path` (a folder written by `save_pretrained`) wins over `model_id`; `model_id` is then only
    the name reported for lineage. `cache_dir=None` leaves the Hugging Face defaults in charge, so
    HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE behave exactly as they do for transformers.
    """

    model_id: str = DEFAULT_MODEL_ID
    revision: str | None = None
    local_path: str | os.PathLike[str] | None = None
    device: str = "auto"  # "auto" -> cuda when available, else cpu; or any torch device string
    dtype: str = "auto"  # "auto" -> float16 on cuda, float32 on cpu; or float32/float16/bfloat16
    input_short_side: int = 518
    batch_size: int = 8
    cache_dir: str | os.PathLike[str] | None = None


class DepthModelUnavailable(Exception):
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


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """float16 rather than bfloat16 on GPUs: its 11-bit mantissa is finer than the 10-bit depth codec,
    bfloat16's 8 bits are not."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"DepthModelConfig.dtype={dtype!r} is not one of 'auto', {sorted(_DTYPES)}") from None


def _is_unreachable_error(exc: BaseException) -> bool:
    """True for the error transformers raises when weights are not cached and the Hub cannot be used.

    transformers 5.23 (`utils/hub.py: cached_files`) wraps huggingface_hub's LocalEntryNotFoundError
    (offline mode or no connection, nothing cached) and HfHubHTTPError (connection-level HTTP failure)
    in a plain OSError, chaining the original as __cause__. A wrong repo id or revision chains
    RepositoryNotFoundError / RevisionNotFoundError instead and is left alone: that is a setting error.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, LocalEntryNotFoundError):
            return True
        if isinstance(cur, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)):
            return False
        if isinstance(cur, HfHubHTTPError):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def hub_endpoint() -> str:
    """The Hub URL huggingface_hub uses (HF_ENDPOINT, read by it at import)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def _probe_target(endpoint: str) -> tuple[str, int, str]:
    """(host, port, what) a TCP connect must reach for the Hub to answer: the proxy, when one applies."""
    url = urllib.parse.urlsplit(endpoint)
    scheme = url.scheme or "https"
    host = url.hostname or ""
    port = url.port or (443 if scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        purl = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if purl.hostname:
            return purl.hostname, purl.port or 80, f"proxy {purl.hostname}:{purl.port or 80}"
    return host, port, f"{host}:{port}"


def hub_unreachable_reason(timeout_s: float | None = None) -> str | None:
    """None if the Hub endpoint accepts a TCP connection within `timeout_s`, else why not, in a few words.

    One quick connect (name lookup included, bounded by a thread since getaddrinfo has no timeout)
    instead of letting every file request retry for ~25 s. The answer is kept for a few minutes.
    """
    endpoint = hub_endpoint()
    timeout = HUB_PROBE_TIMEOUT_S if timeout_s is None else timeout_s
    cached = _hub_probes.get(endpoint)
    if cached is not None and time.monotonic() - cached[0] < _HUB_PROBE_TTL_S:
        return cached[1]
    host, port, what = _probe_target(endpoint)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(f"{what}: {exc.strerror or exc}")

    worker = threading.Thread(target=connect, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    reason = outcome[0] if outcome else f"{what}: no answer within {timeout:g} s"
    _hub_probes[endpoint] = (time.monotonic(), reason)
    if reason is not None:
        # One line per probe, since the retries it saves would have printed a dozen.
        log.warning("Hugging Face Hub at %s is unreachable (%s): using only the local model cache", endpoint, reason)
    return reason


def _hub_mode(config: DepthModelConfig) -> tuple[dict, str | None]:
    """from_pretrained kwargs and, when the Hub is unreachable, why: then only the local cache is read."""
    from huggingface_hub import is_offline_mode

    if is_offline_mode():
        return {}, None
    reason = hub_unreachable_reason()
    if reason is None:
        return {}, None
    return {"local_files_only": True}, reason


def _not_cached_reason(unreachable: str | None) -> str:
    if unreachable is None:
        return "no cached copy was found and the Hugging Face Hub could not be used"
    return f"no cached copy was found and the Hugging Face Hub at {hub_endpoint()} is unreachable ({unreachable})"


def _unavailable_message(config: DepthModelConfig, reason: str) -> str:
    from huggingface_hub import is_offline_mode

    rev = config.revision or "main"
    where = f"cache_dir={config.cache_dir}" if config.cache_dir else "the Hugging Face cache (HF_HOME / HF_HUB_CACHE)"
    offline = " HF_HUB_OFFLINE is set, so the Hub was not asked." if is_offline_mode() else ""
    return (
        f"Depth model {config.model_id!r} (revision {rev!r}) is not available: {reason}.{offline} "
        f"Looked in {where}. To provide the weights: on a machine with internet access run "
        f"`hf download {config.model_id}` (older clients: `huggingface-cli download {config.model_id}`)"
        f"{f' --revision {config.revision}' if config.revision else ''} and copy its cache folder here, "
        "pointing HF_HOME (or HF_HUB_CACHE) at it; or save the model with `save_pretrained` and set "
        "DepthModelConfig.local_path to that folder."
    )


def load_depth_model(config: DepthModelConfig, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Load the weights through `AutoModelForDepthEstimation.from_pretrained` (hub cache or local folder)."""
    from transformers import AutoModelForDepthEstimation

    if config.local_path is not None:
        folder = Path(config.local_path)
        if not (folder / "config.json").is_file():
            raise DepthModelUnavailable(
                _unavailable_message(config, f"local_path {str(folder)!r} has no config.json (not a save_pretrained folder)")
            )
        source, kwargs = str(folder), {}
    else:
        source = config.model_id
        kwargs = {"revision": config.revision}
        if config.cache_dir is not None:
            kwargs["cache_dir"] = str(config.cache_dir)
    unreachable = None
    if config.local_path is None:
        hub_kwargs, unreachable = _hub_mode(config)
        kwargs.update(hub_kwargs)
    try:
        model = AutoModelForDepthEstimation.from_pretrained(source, dtype=dtype, **kwargs)
    except OSError as exc:
        if unreachable is not None or _is_unreachable_error(exc):
            raise DepthModelUnavailable(_unavailable_message(config, _not_cached_reason(unreachable))) from exc
        raise
    return model.to(device).eval()


def check_weights_available(config: DepthModelConfig) -> None:
    """Raise DepthModelUnavailable unless the model can be loaded, without loading its weights.

    Asks for the model's config.json the way from_pretrained would (cache first, then the Hub), so
    a step can decide what to do before it starts model actors. An unreachable Hub is found with one
    quick connect (HUB_PROBE_TIMEOUT_S), after which only the cache is asked.
    """
    from transformers import AutoConfig

    if config.local_path is not None:
        if not (Path(config.local_path) / "config.json").is_file():
            raise DepthModelUnavailable(
                _unavailable_message(config, f"local_path {str(config.local_path)!r} has no config.json")
            )
        return
    kwargs = {"revision": config.revision}
    if config.cache_dir is not None:
        kwargs["cache_dir"] = str(config.cache_dir)
    hub_kwargs, unreachable = _hub_mode(config)
    try:
        AutoConfig.from_pretrained(config.model_id, **kwargs, **hub_kwargs)
    except OSError as exc:
        if unreachable is not None or _is_unreachable_error(exc):
            raise DepthModelUnavailable(_unavailable_message(config, _not_cached_reason(unreachable))) from exc
        raise


def cached_commit_hash(config: DepthModelConfig) -> str | None:
    """The commit the Hub cache resolves `config.revision` to (the snapshot folder's name), if cached.

    transformers 5.23 no longer records `_commit_hash` on the loaded config, so ask the cache the same
    question from_pretrained asked: which snapshot holds config.json for this repo and revision.
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(
            config.model_id,
            "config.json",
            cache_dir=str(config.cache_dir) if config.cache_dir is not None else None,
            revision=config.revision,
        )
    except Exception:  # an unusual revision string or cache layout only costs us the hash
        return None
    if isinstance(found, str):
        snapshot = Path(found).parent.name
        if len(snapshot) == 40 and all(c in "0123456789abcdef" for c in snapshot):
            return snapshot
    return None


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
        if self.config.local_path is not None:
            self.revision = "local"
        else:
            self.revision = cached_commit_hash(self.config) or self.config.revision or "main"
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


def _check_frames_shape(frames: np.ndarray | torch.Tensor) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
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
