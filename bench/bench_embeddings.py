"""clip_embeddings throughput: the column stage against the bare model on the same frames, per CPU core.

    uv run python bench/bench_embeddings.py [--videos 6] [--frames 8] [--batch 16] [--threads 1]
        [--real-videos DIR] [--rounds 2] [--json out.json]

The model is the google/siglip2-base-patch16-224 architecture (SigLIP, 768 wide, 12 + 12 layers,
224 px, patch 16) with random weights (the real ones cannot be downloaded here; a forward pass costs
the same whatever the weights' values), saved with save_pretrained with its image processor and a
local tokenizer, and loaded through the production path. The text tower's vocabulary is cut to the
local tokenizer's 261 tokens: a lookup table the image path never touches.

Inputs: generated 640x360 H.264 clips of 10 s at 25 fps (Kinetics-like), or the mp4 files of
`--real-videos`, in a real Lance table. Each round, in alternating order so that load on a shared
machine weighs on both alike:

1. bare: the same sampled frames (count=`--frames` over each clip) decoded up front; the image
   processor, the image tower in batches of `--batch` frames and the pooling (`ClipEmbedder` +
   `pool_clip`): videos/s.
2. stage: `ClipEmbeddingsStage` through `run_column_stage_shard` and the in-process executor on the
   table: read each video from Lance, decode, preprocess, the model, pooling, the column commit and
   the checks; videos/s after the model load (the bare run loads nothing either).

torch and the decoder run `--threads` threads: the figures are per that many cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _generated_clips(count: int) -> list[bytes]:
    import numpy as np

    from tests.harness.exotic_clips import exotic_clip_bytes

    def pattern(seed: int):  # noqa: ANN202 - a frame pattern
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 255, (360 // 8, 640 // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        return lambda i, _w, _h: np.roll(base, 4 * i, axis=1)

    return [
        exotic_clip_bytes(container_format="mp4", width=640, height=360, fps=25, frames=250, pattern=pattern(k))
        for k in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=8, help="frames per video (the stage's count=8 default)")
    parser.add_argument("--batch", type=int, default=16, help="frames per forward pass")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--real-videos", type=Path, default=None, help="a folder of mp4 files to use instead")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()

    import lance
    import numpy as np
    import torch

    from kinetics_assets.embed.model import ClipEmbedder, EmbeddingModelConfig, pool_clip
    from kinetics_assets.embed.random_model import TOKENIZER_SIZE, save_siglip_model, siglip2_base_config
    from kinetics_assets.media.decode import decode_frames, frame_timestamps
    from kinetics_assets.media.sampling import FrameSampling
    from kinetics_assets.stages import InProcessExecutor, Resources, run_column_stage_shard
    from kinetics_assets.stages.embeddings import ClipEmbeddingsStage
    from kinetics_assets.table import commit_shard, write_shard_fragments

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_embeddings_"))
    folder = save_siglip_model(
        work / "siglip2-base-random", siglip2_base_config(TOKENIZER_SIZE), image_size=224, text_length=64
    )
    config = EmbeddingModelConfig(model_id="random siglip2-base-patch16-224", local_path=folder, batch_size=args.batch)
    sampling = FrameSampling("count", count=args.frames)
    if args.real_videos:
        clips = [p.read_bytes() for p in sorted(args.real_videos.glob("*.mp4"))[: args.videos]]
    else:
        clips = _generated_clips(args.videos)

    uri = str(work / "t.lance")
    rows = [
        {
            "video_id": f"v{i:03d}",
            "shard": "s0",
            "status": "ok",
            "video": data,
            "duration_s": float(frame_timestamps(data)[-1]),
            "frames": len(frame_timestamps(data)),
            "processed_at": datetime.now(UTC),
        }
        for i, data in enumerate(clips)
    ]
    commit_shard(uri, "s0", write_shard_fragments(rows, uri))

    embedder = ClipEmbedder(config)
    frames = [decode_frames(data, sampling.indices(frame_timestamps(data)))[0] for data in clips]
    embedder.embed_frames(frames[0][:2])  # warm-up: first-call allocations

    def embed(videos: list) -> list:
        vectors = embedder.embed_frames(np.concatenate(videos))
        return [pool_clip(v) for v in np.split(vectors, np.cumsum([len(v) for v in videos])[:-1])]

    def bare() -> float:
        """Videos batched as the stage's Batcher does: whole videos up to `--batch` frames."""
        started = time.perf_counter()
        batch: list = []
        for video in frames:
            if batch and sum(len(v) for v in batch) + len(video) > args.batch:
                embed(batch)
                batch = []
            batch.append(video)
        embed(batch)
        return len(frames) / (time.perf_counter() - started)

    def stage() -> tuple[float, float]:
        stage = ClipEmbeddingsStage(model=config, sampling=sampling, resources=Resources(cpus=args.threads))
        result = run_column_stage_shard("s0", stage, lance_uri=uri, storage_options=None, executor=InProcessExecutor())
        if result.ok != len(clips) or not all(v.passed for v in result.checks.values()):
            raise RuntimeError(f"stage run: {result.counts}, checks {result.checks}")
        return result.videos / (result.seconds - result.model_load_s), result.model_load_s

    runs: dict[str, list[float]] = {"bare": [], "stage": []}
    load_s: list[float] = []
    for round_ in range(args.rounds):
        for which in ("bare", "stage") if round_ % 2 == 0 else ("stage", "bare"):
            if which == "bare":
                runs["bare"].append(bare())
            else:
                rate, loaded = stage()
                runs["stage"].append(rate)
                load_s.append(loaded)
            print(which, round(runs[which][-1], 3), "videos/s", flush=True)

    stored = lance.dataset(uri).to_table(columns=["embedding"])["embedding"]
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_1min_before": load_before[0],
        "load_1min_after": os.getloadavg()[0],
        "torch_threads": args.threads,
        "videos": len(clips),
        "frames_per_video": args.frames,
        "batch_frames": args.batch,
        "width": embedder.width,
        "stored_type": str(stored.type),
        "bare_videos_per_s": runs["bare"],
        "stage_videos_per_s_after_load": runs["stage"],
        "stage_model_load_s": load_s,
        "stage_over_bare_best": max(runs["stage"]) / max(runs["bare"]),
        "stage_over_bare_median": statistics.median(runs["stage"]) / statistics.median(runs["bare"]),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
