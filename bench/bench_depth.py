"""Depth pipeline throughput against the bare model forward, same model, batch and input size.

    KINETICS_REAL_VIDEOS_DIR=... uv run python bench/bench_depth.py [--short-side 294] [--batch 4]

The model is the full Depth Anything V2 Small architecture with random weights (the real weights
cannot be downloaded here; the cost of a forward pass does not depend on the weights' values),
saved with save_pretrained and loaded through the production path. Steps:

1. bare: frames of the transcoded clips decoded up front, preprocessed, and run through the model's
   forward in batches; frames/s of preprocess + forward + resize back (what `predict` does).
2. pipeline: the depth stage (`DepthStage` through `run_column_stage_shard`) on the same table on a
   local Ray (`RayStageExecutor`): decode tasks, one model actor, encode tasks, the Lance commit. frames/s from the moment the model is loaded to the last encoded video
   (the bare forward does not count loading either; the first videos decode during the load), and
   frames/s over the whole compute including the actor start and model load.
Also: bytes per video against float16 raw, and the encoding error against the float output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short-side", type=int, default=294)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=int, default=6, help="generated 640x360 clips of 2 s at 15 fps")
    parser.add_argument("--out", default="bench/results/depth.json")
    args = parser.parse_args()
    load_before = os.getloadavg()

    import lance
    import ray
    import torch
    from transformers import DepthAnythingForDepthEstimation

    from kinetics_assets.depth.model import DepthEstimator, DepthModelConfig
    from kinetics_assets.depth.random_model import calibrate_random_head, depth_anything_v2_small_config
    from kinetics_assets.distributed.options import RayStageOptions
    from kinetics_assets.distributed.stage_executor import RayStageExecutor
    from kinetics_assets.distributed.transcode import RayTranscodeExecutor, RayTranscodeOptions
    from kinetics_assets.ingest.shards import Shard
    from kinetics_assets.media.decode import decode_frames
    from kinetics_assets.media.depth_codec import DepthEncoding, decode_depth, encode_depth
    from kinetics_assets.media.transcode import TranscodeConfig
    from kinetics_assets.ops.sample import make_clip
    from kinetics_assets.stages import DepthStage, run_column_stage_shard
    from kinetics_assets.steps.transcode import transcode_step

    work = Path(tempfile.mkdtemp(prefix="bench-depth-"))
    torch.manual_seed(0)
    small = calibrate_random_head(DepthAnythingForDepthEstimation(depth_anything_v2_small_config()).eval())
    small.save_pretrained(work / "small")
    config = DepthModelConfig(
        local_path=str(work / "small"),
        model_id="Depth-Anything-V2-Small (random weights)",
        batch_size=args.batch,
        input_short_side=args.short_side,
        device="cpu",
    )

    # A folder of clips as a video-list shard, transcoded into a table (not timed).
    clips = work / "clips"
    for i in range(args.clips):
        make_clip(clips / f"clip{i:02d}_000000_000010.mp4", width=640, height=360, fps=15, seconds=2.0)
    ray.init(num_cpus=args.threads, include_dashboard=False)
    uri = str(work / "t.lance")
    shard = Shard("bench", "videos", tuple(str(p) for p in sorted(clips.iterdir())), "custom", "bench")
    transcode_step(
        shard,
        clips,
        lance_uri=uri,
        storage_options=None,
        annotations={},
        config=TranscodeConfig(),
        executor=RayTranscodeExecutor(options=RayTranscodeOptions(max_in_flight=2)),
        log=lambda _: None,
    )
    ds = lance.dataset(uri)
    row_ids = ds.to_table(columns=[], filter="status = 'ok'", with_row_id=True)["_rowid"].to_pylist()
    videos = [blob.read() for blob in ds.take_blobs("video", ids=row_ids)]
    frames = np.concatenate([decode_frames(v)[0] for v in videos])

    # 1. bare forward on pre-decoded frames, same batch and input size, all threads.
    torch.set_num_threads(args.threads)
    estimator = DepthEstimator(config)
    estimator.predict(frames[: args.batch])  # warm-up
    t0 = time.perf_counter()
    depth_all = estimator.predict(frames)
    bare_s = time.perf_counter() - t0
    bare_fps = len(frames) / bare_s
    del estimator

    # 2. the pipeline: one model actor using the same threads, decode/encode tasks beside it.
    log: list[str] = []
    t0 = time.perf_counter()
    stage = DepthStage(model=config, encoding=DepthEncoding())
    result = run_column_stage_shard(
        "bench",
        stage,
        lance_uri=uri,
        storage_options=None,
        executor=RayStageExecutor(
            options=RayStageOptions(actors=1, actor_num_cpus=1, torch_threads=args.threads, max_in_flight=3)
        ),
        log=log.append,
    )
    step_s = time.perf_counter() - t0
    if result.failed or not all(v.passed for v in result.checks.values()):
        raise RuntimeError(f"the depth stage failed: {result.failed} failed, checks {result.checks}")
    stage_frames = sum(stage.frames_of(row) for row in result.rows)
    pipeline_fps = stage_frames / (result.seconds - result.model_load_s)
    pipeline_with_load_fps = stage_frames / result.seconds

    # 3. storage: bytes per video vs float16, and the error of the stored depth vs the float output.
    start, errors, stored, raw = 0, [], 0, 0
    for video in videos:
        n = len(decode_frames(video)[0])
        depth = depth_all[start : start + n]
        start += n
        encoded = encode_depth(depth, np.arange(n) / 15.0, DepthEncoding())
        back = decode_depth(encoded.data, encoded.lo, encoded.hi)
        errors.append(float(np.mean(np.abs(back - depth)) / max(encoded.hi - encoded.lo, 1e-12)))
        stored += len(encoded.data)
        raw += depth.astype(np.float16).nbytes
    ray.shutdown()

    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "model": "Depth-Anything-V2-Small architecture, random weights",
        "input_short_side": args.short_side,
        "batch": args.batch,
        "threads": args.threads,
        "frames": len(frames),
        "videos": len(videos),
        "bare_frames_per_s": round(bare_fps, 3),
        "pipeline_frames_per_s": round(pipeline_fps, 3),
        "pipeline_over_bare": round(pipeline_fps / bare_fps, 3),
        "pipeline_with_model_load_frames_per_s": round(pipeline_with_load_fps, 3),
        "pipeline_with_model_load_over_bare": round(pipeline_with_load_fps / bare_fps, 3),
        "model_load_s": round(result.model_load_s, 2),
        "pipeline_compute_s": round(result.seconds, 2),
        "depth_step_total_s": round(step_s, 2),
        "bytes_per_video": stored // len(videos),
        "float16_bytes_per_video": raw // len(videos),
        "mean_abs_error_of_range": round(float(np.mean(errors)), 6),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "peak_rss_mb_driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
