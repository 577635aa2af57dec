"""The Dagster side of the checks: specs and evaluations built from the steps' declarations."""

from __future__ import annotations

import dagster as dg

from kinetics_assets.defs.pipeline import PARTITIONED_ASSETS, shard_definitions
from kinetics_assets.defs.recording import ShardRecord, _blocked, _evaluation
from kinetics_assets.settings import Settings
from kinetics_assets.steps.checks import (
    DEPTH_CHECKS,
    EMBEDDING_CHECKS,
    FAILURE_RATE,
    FINGERPRINT_CHECKS,
    FRAME_STATS_CHECKS,
    MEMBER_NAMES_PARSE,
    RAW_CHECKS,
    TRANSCODE_CHECKS,
    TRANSCRIPT_CHECKS,
    Verdict,
)

DECLARED = {
    "raw_archives": RAW_CHECKS,
    "transcoded_videos": TRANSCODE_CHECKS,
    "depth_maps": DEPTH_CHECKS,
    "transcripts": TRANSCRIPT_CHECKS,
    "frame_stats": FRAME_STATS_CHECKS,
    "clip_embeddings": EMBEDDING_CHECKS,
    "clip_fingerprints": FINGERPRINT_CHECKS,
}


def test_each_assets_specs_are_its_declarations():
    assets = list(shard_definitions(Settings.from_env({}), {}).assets)
    assert {a.key.to_user_string() for a in assets} == set(DECLARED)
    for asset in assets:
        declared = DECLARED[asset.key.to_user_string()]
        specs = sorted(asset.check_specs, key=lambda s: s.name)
        assert [(s.name, s.description, s.blocking) for s in specs] == sorted(
            (c.name, c.description or None, c.blocking) for c in declared
        )
        assert all(s.partitions_def is not None for s in specs)


def test_the_demos_list_is_every_shard_asset_upstream_first():
    """The demo materializes PARTITIONED_ASSETS and the UI test counts partitioned nodes by it."""
    assets = {a.key.to_user_string(): a for a in shard_definitions(Settings.from_env({}), {}).assets}
    assert set(PARTITIONED_ASSETS) == set(assets)
    for position, name in enumerate(PARTITIONED_ASSETS):
        upstream = {key.to_user_string() for key in assets[name].asset_deps[assets[name].key]}
        assert upstream <= set(PARTITIONED_ASSETS[:position]), (name, upstream)


def test_an_evaluation_carries_the_declared_severity_and_the_verdicts_details():
    key = dg.AssetKey("raw_archives")
    verdict = Verdict(False, {"unparsable": ["a.mp4"], "count": 1})
    evaluation = _evaluation(key, MEMBER_NAMES_PARSE, verdict, "part_0")
    assert (evaluation.check_name, evaluation.passed, evaluation.partition) == ("member_names_parse", False, "part_0")
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert not evaluation.blocking
    assert evaluation.metadata["unparsable"] == dg.MetadataValue.json(["a.mp4"])
    assert evaluation.metadata["count"].value == 1


def test_a_failed_blocking_check_fails_the_shard_and_a_failed_warning_does_not():
    failing = Verdict(False, {"rate": 0.5, "max": 0.2})
    record = ShardRecord(partition="p", metadata={}, verdicts={FAILURE_RATE.name: failing})
    assert _blocked(TRANSCODE_CHECKS, record) == f"blocking check failure_rate failed: {failing.details}"
    passing = ShardRecord(partition="p", metadata={}, verdicts={FAILURE_RATE.name: Verdict(True)})
    assert _blocked(TRANSCODE_CHECKS, passing) is None
    warned = ShardRecord(partition="p", metadata={}, verdicts={MEMBER_NAMES_PARSE.name: Verdict(False)})
    assert _blocked(RAW_CHECKS, warned) is None
