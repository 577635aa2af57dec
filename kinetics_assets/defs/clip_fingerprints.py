"""`clip_fingerprints`: a perceptual hash of each second of every ok video, to find near-duplicates."""

from typing import Any

import dagster as dg

from kinetics_assets.defs.column_asset import ColumnAsset, build_column_asset
from kinetics_assets.defs.engine_config import RunConfig, adding_engine_fields, engine_fields, to_engine
from kinetics_assets.defs.partitions import ShardAssets
from kinetics_assets.media.fingerprint import FingerprintConfig
from kinetics_assets.steps.checks import FINGERPRINT_CHECKS


@adding_engine_fields(engine_fields(FingerprintConfig, "fps", "frames_per_hash"))
class FingerprintRunConfig(RunConfig):
    """How many hashes a second of video gets (`fps`), and how many sampled frames are averaged
    into each (`frames_per_hash`: more is steadier against time shifts, and slower).
    """

    force: bool = False
    """Hash again shards whose ok videos all have fingerprints made after them with these settings."""
    max_in_flight: int | None = None
    """Videos in flight at once on Ray; None: the stage's own default."""


def _stage(config: FingerprintRunConfig, model: None, pretrained: bool) -> Any:  # noqa: ANN401, ARG001, FBT001 - the factory's signature
    from kinetics_assets.stages.fingerprints import FingerprintStage  # Lance and the decoder: loaded by the step

    return FingerprintStage(config=to_engine(config, FingerprintConfig))


def _metadata(result: Any, stage: Any, config: FingerprintRunConfig) -> dict[str, Any]:  # noqa: ANN401, ARG001 - a StageShardResult of FingerprintRows
    hashed = [r for r in result.rows if r.status == "ok"]
    return {
        "videos": result.videos,
        "fingerprint_ok": result.ok,
        "fingerprint_failed": result.failed,
        "hashes": sum(len(r.hashes) for r in hashed),
        "all_flat": sum(1 for r in hashed if not any(r.hashes)),
    }


CLIP_FINGERPRINTS = ColumnAsset(
    name="clip_fingerprints",
    description="A 64-bit perceptual hash of each second of every ok video (no model), for near-duplicate search.",
    checks=FINGERPRINT_CHECKS,
    kinds=frozenset({"lance"}),
    config=FingerprintRunConfig,
    stage=_stage,
    metadata=_metadata,
)


def build_clip_fingerprints(shard_assets: ShardAssets) -> dg.AssetsDefinition:
    return build_column_asset(shard_assets, CLIP_FINGERPRINTS)
