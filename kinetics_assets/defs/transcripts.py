"""`transcripts`: what is said in every ok video (speech gate, then Whisper), as transcript columns of
the same table.
"""

from collections import Counter
from typing import Any

import dagster as dg

from kinetics_assets.defs.column_asset import ColumnAsset, build_column_asset
from kinetics_assets.defs.engine_config import RunConfig
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.defs.recording import markdown_table, rate
from kinetics_assets.steps.checks import TRANSCRIPT_CHECKS

EXAMPLES = 5
"""Transcribed videos a shard's metadata shows as examples."""


class TranscriptRunConfig(RunConfig):
    """How the run goes; the model (id, language, batch size, device) is the `speech_model` resource."""

    force: bool = False
    """Transcribe again shards whose ok videos all have a transcript (ok, no_audio or no_speech) made
    after the video with the same settings (model, language, task, speech gate); by default they are
    skipped."""
    max_in_flight: int | None = None
    """Videos between decode and transcript at once; None: the stage's own default (32; a 10 s
    clip's audio is 640 KB)."""


def _stage(config: TranscriptRunConfig, model: Any, pretrained: bool) -> Any:  # noqa: ANN401, ARG001, FBT001 - the factory's signature
    from kinetics_assets.stages import TranscriptStage  # torch and the VAD: loaded by the step

    return TranscriptStage(model=model, pretrained=pretrained)


def _metadata(result: Any, stage: Any, config: TranscriptRunConfig) -> dict[str, Any]:  # noqa: ANN401, ARG001 - a StageShardResult of TranscriptRows, a TranscriptStage
    rows, counts = result.rows, result.counts
    ok_rows = [r for r in rows if r.status == "ok"]
    audio_s = sum(r.audio_s for r in rows)
    examples = [{"video_id": r.video_id, "language": r.language, "text": r.text} for r in ok_rows[:EXAMPLES]]
    return {
        "clips": result.videos,
        "clips_with_speech": sum(1 for r in rows if r.speech_s > 0),
        **{f"status_{status}": counts.get(status, 0) for status in stage.statuses},
        "languages": dg.MetadataValue.json(dict(Counter(r.language for r in ok_rows))),
        "audio_s": round(audio_s, 2),
        "speech_s": round(sum(r.speech_s for r in rows), 2),
        "real_time_factor": rate(audio_s, result.seconds),
        "examples": dg.MetadataValue.md(markdown_table(examples, ["video_id", "language", "text"])),
    }


TRANSCRIPTS = ColumnAsset(
    name="transcripts",
    description="What is said in every ok video (Silero VAD, then Whisper), as transcript columns of the same table.",
    checks=TRANSCRIPT_CHECKS,
    pool="transcripts",
    kinds=frozenset({"pytorch", "lance"}),
    config=TranscriptRunConfig,
    stage=_stage,
    metadata=_metadata,
    model_resource="speech_model",
    random_model="random-whisper",
)


def build_transcripts(shard_assets: ShardAssets) -> dg.AssetsDefinition:
    return build_column_asset(shard_assets, TRANSCRIPTS)
