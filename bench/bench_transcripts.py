"""Transcripts: pipeline throughput against the bare model, Whisper sizes, and the speech gate.

    uv run python bench/bench_transcripts.py [--size base] [--clips 12] [--batch 4] [--tokens 48]
        [--sizes tiny base small] [--repeats 2] [--gate-clips 8] [--json bench/results/transcripts.json]

Whisper's real weights cannot be downloaded here; the cost of a forward pass does not depend on the
weights' values, so each size is built with the published architecture (d_model, layers, heads, mel
bins, vocabulary) and random weights, saved with save_pretrained and loaded through the production
path. A random decoder rarely ends a sequence, so every window decodes `--tokens` tokens (about what
10 s of speech with timestamps takes) and the figures are per fixed token count.

1. sizes: seconds per 10 s clip for the bare model (features + language detection + generation) at
   batch `--batch`, per size.
2. pipeline vs bare: the transcript stage (`TranscriptStage` through `run_column_stage`) with the
   in-process executor (blob read, audio decode, VAD, model, Lance commit), clips/s from the model's
   load to the last commit, against
   `SpeechRecognizer.transcribe` on the same clips decoded up front at the same batch size,
   alternated `--repeats` times (best against best; the stage keeps its model between runs, so
   only the first run loads it); then once with the Ray executor on a local Ray.
3. gate: clips of silence and of a steady tone through the same step: seconds per clip, and how many
   reached the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

if TYPE_CHECKING:
    from kinetics_assets.stages import StageExecutor, TranscriptStage


def save_sized_whisper(folder: Path, size: str, tokens: int) -> Path:
    """A published Whisper architecture with random weights and the test tokenizer's layout, made to
    decode exactly `tokens` tokens per window."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    from kinetics_assets.speech.random_model import (
        build_tiny_whisper_tokenizer,
        whisper_config,
        whisper_generation_config,
    )

    tokenizer = build_tiny_whisper_tokenizer()
    config = whisper_config(size)
    config.decoder_start_token_id = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = whisper_generation_config(tokenizer)
    model.generation_config.min_new_tokens = tokens
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer).save_pretrained(folder)
    return folder


def publish(uri: str, shard: str, clips: dict[str, bytes], seconds: float) -> None:
    from kinetics_assets.table import commit_shard, write_shard_fragments

    rows = [
        {
            "video_id": f"{shard}-{name}",
            "shard": shard,
            "status": "ok",
            "video": data,
            "duration_s": seconds,
            "processed_at": datetime.now(UTC),
        }
        for name, data in clips.items()
    ]
    commit_shard(uri, shard, write_shard_fragments(rows, uri))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="base", help="Whisper size for the pipeline-vs-bare comparison")
    parser.add_argument("--sizes", nargs="*", default=["tiny", "base", "small"], help="sizes for the speed table")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gate-clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from kinetics_assets.media.audio import decode_audio
    from kinetics_assets.speech.model import SpeechModelConfig, SpeechRecognizer
    from kinetics_assets.stages import InProcessExecutor, TranscriptStage, run_column_stage
    from tests.harness.audio_clips import make_av_clip

    torch.set_num_threads(args.threads)
    report: dict = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    work = Path(tempfile.mkdtemp(prefix="bench_transcripts_"))

    def config_for(size: str) -> SpeechModelConfig:
        folder = work / f"whisper-{size}"
        if not folder.exists():
            save_sized_whisper(folder, size, args.tokens)
        return SpeechModelConfig(
            model_id=f"random {size}",
            local_path=str(folder),
            batch_size=args.batch,
            device="cpu",
            max_new_tokens=args.tokens,
            language=None,
        )

    voices = {
        f"v{i:03d}": make_av_clip(work / f"v{i}.mp4", audio="voice", seconds=args.seconds, seed=i).read_bytes()
        for i in range(args.clips)
    }
    samples = [decode_audio(data, max_duration_s=args.seconds).samples for data in voices.values()]

    # 1. sizes
    sizes = {}
    for size in args.sizes:
        recognizer = SpeechRecognizer(config_for(size))
        batch = samples[: args.batch]
        recognizer.transcribe(batch[:1])  # warm-up
        started = time.perf_counter()
        recognizer.transcribe(batch)
        spent = time.perf_counter() - started
        params = sum(p.numel() for p in recognizer.model.parameters())
        sizes[size] = {
            "params_m": round(params / 1e6, 1),
            "s_per_clip": round(spent / len(batch), 3),
            "clips_per_s": round(len(batch) / spent, 3),
        }
        print(
            f"sizes: {size}: {params / 1e6:.0f} M params, {spent / len(batch):.2f} s per {args.seconds:g} s clip "
            f"at batch {args.batch}, {args.tokens} tokens",
            flush=True,
        )
        del recognizer
    report["sizes"] = sizes

    # 2. bare model on pre-decoded audio vs the pipeline, same size and batch, alternated `--repeats`
    # times (the machine may be shared: the best of each is compared)
    config = config_for(args.size)
    recognizer = SpeechRecognizer(config)
    recognizer.transcribe(samples[:1])

    def run_bare() -> float:
        started = time.perf_counter()
        for i in range(0, len(samples), args.batch):
            recognizer.transcribe(samples[i : i + args.batch])
        return len(samples) / (time.perf_counter() - started)

    def transcribe_shards(uri: str, shards: list[str], stage: TranscriptStage, executor: StageExecutor) -> list[Any]:
        results = list(
            run_column_stage(stage, shards, lance_uri=uri, storage_options=None, executor=executor, log=lambda _: None)
        )
        failed = [r for r in results if not hasattr(r, "rows")]  # a ShardFailure
        if failed:
            raise RuntimeError(f"the transcript stage failed: {failed}")
        return results

    def run_pipeline(name: str, stage: TranscriptStage, executor: StageExecutor) -> dict:
        uri = str(work / f"{name}-{time.monotonic_ns()}.lance")
        half = len(voices) // 2
        items = list(voices.items())
        publish(uri, "s1", dict(items[:half]), args.seconds)
        publish(uri, "s2", dict(items[half:]), args.seconds)
        started = time.perf_counter()
        results = transcribe_shards(uri, ["s1", "s2"], stage, executor)
        total = time.perf_counter() - started
        load = max(r.model_load_s for r in results)
        clips = sum(r.videos for r in results)
        return {
            "clips": clips,
            "total_s": round(total, 2),
            "model_load_s": round(load, 2),
            "clips_per_s_after_load": round(clips / (total - load), 3),
            "checks_passed": all(v.passed for r in results for v in r.checks.values()),
        }

    bare_runs, in_process_runs = [], []
    in_process = TranscriptStage(model=config)  # set up once: later runs reuse its model
    for repeat in range(args.repeats):
        bare_runs.append(run_bare())
        in_process_runs.append(run_pipeline("in_process", in_process, InProcessExecutor()))
        print(
            f"repeat {repeat}: bare {bare_runs[-1]:.3f} clips/s, in-process pipeline "
            f"{in_process_runs[-1]['clips_per_s_after_load']:.3f} clips/s",
            flush=True,
        )
    bare = max(bare_runs)
    best = max(r["clips_per_s_after_load"] for r in in_process_runs)
    report["bare"] = {"clips": len(samples), "clips_per_s_runs": [round(b, 3) for b in bare_runs]}
    report["pipeline_in_process"] = {"runs": in_process_runs, "ratio_best_to_best_bare": round(best / bare, 3)}
    print(
        f"bare (best of {args.repeats}): {bare:.3f} clips/s; in-process pipeline (best): {best:.3f} clips/s "
        f"= {best / bare:.2f} x bare",
        flush=True,
    )
    if not args.no_ray:
        import ray

        from kinetics_assets.distributed.options import RayStageOptions
        from kinetics_assets.distributed.stage_executor import RayStageExecutor

        ray.init(address="local", num_cpus=args.threads, include_dashboard=False)
        try:
            ray_run = run_pipeline(
                "ray",
                TranscriptStage(model=config),
                RayStageExecutor(options=RayStageOptions(torch_threads=args.threads)),
            )
        finally:
            ray.shutdown()
        ray_run["ratio_to_best_bare"] = round(ray_run["clips_per_s_after_load"] / bare, 3)
        report["pipeline_ray"] = ray_run
        print(f"pipeline (ray): {ray_run}", flush=True)

    # 3. the speech gate on clips without speech
    gate = {}
    for kind in ("silence", "tone"):
        clips = {
            f"{kind}{i:03d}": make_av_clip(
                work / f"{kind}{i}.mp4", audio=kind, seconds=args.seconds, seed=i
            ).read_bytes()
            for i in range(args.gate_clips)
        }
        uri = str(work / f"gate_{kind}.lance")
        publish(uri, "g", clips, args.seconds)
        started = time.perf_counter()
        (result,) = transcribe_shards(uri, ["g"], TranscriptStage(model=config), InProcessExecutor())
        spent = time.perf_counter() - started - result.model_load_s
        reached = len(clips) - result.counts["no_speech"] - result.counts["no_audio"]
        gate[kind] = {
            "clips": len(clips),
            "reached_model": reached,
            "s_per_clip": round(spent / len(clips), 3),
            "model_s_per_clip_avoided": round(1 / bare, 3),
        }
        print(
            f"gate: {kind}: {len(clips)} clips, {reached} reached the model, {spent / len(clips):.3f} s per clip "
            f"(the model would have taken {1 / bare:.2f} s each)",
            flush=True,
        )
    report["gate"] = gate
    report["loadavg_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
