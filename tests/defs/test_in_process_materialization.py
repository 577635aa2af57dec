"""The shard assets materialized through Dagster in this process, with KINETICS_EXECUTION=in_process:
no Ray, no subprocess, no daemon. The code location is built as Dagster builds it (`definitions.defs()`,
from the environment), with the tiny random models named through the same variables a user sets."""

from __future__ import annotations

import os
import sys
import tarfile

import dagster as dg
import lance

from kinetics_assets import definitions
from kinetics_assets.steps.checks import (
    DEPTH_CHECKS,
    EMBEDDING_CHECKS,
    FRAME_STATS_CHECKS,
    RAW_CHECKS,
    TRANSCODE_CHECKS,
    TRANSCRIPT_CHECKS,
)
from tests.harness.audio_clips import make_av_clip
from tests.harness.tiny_depth import save_tiny_depth_model
from tests.harness.tiny_siglip import save_tiny_siglip_model
from tests.harness.tiny_whisper import save_tiny_whisper_model

SHARD = "talk_000"
CLIPS = {
    "talking/vOice000001_000000_000010.mp4": "voice",
    "talking/mUte0000001_000002_000012.mp4": "none",
}
SHARD_ASSETS = ("raw_archives", "transcoded_videos", "depth_maps", "transcripts", "frame_stats", "clip_embeddings")


def _shard(tmp_path):
    clips = tmp_path / "clips"
    archive = tmp_path / "served" / f"{SHARD}.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for i, (member, audio) in enumerate(CLIPS.items()):
            tar.add(make_av_clip(clips / f"{i}.mp4", audio=audio, seconds=1.0, seed=i), arcname=member)
    manifest = tmp_path / "manifest.txt"
    manifest.write_text(archive.as_uri() + "\n")
    return manifest


def test_shard_assets_materialize_in_process_without_ray(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith("KINETICS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KINETICS_MANIFEST", str(_shard(tmp_path)))
    monkeypatch.setenv("KINETICS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("KINETICS_EXECUTION", "in_process")
    monkeypatch.setenv("KINETICS_DEPTH_MODEL_PATH", str(save_tiny_depth_model(tmp_path / "tiny-depth")))
    monkeypatch.setenv("KINETICS_SPEECH_MODEL_PATH", str(save_tiny_whisper_model(tmp_path / "tiny-whisper")))
    monkeypatch.setenv("KINETICS_EMBEDDING_MODEL_PATH", str(save_tiny_siglip_model(tmp_path / "tiny-siglip")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ray_before = "ray" in sys.modules

    defs = definitions.defs()
    assets = [a for a in defs.assets if a.key.to_user_string() in SHARD_ASSETS]
    assert len(assets) == len(SHARD_ASSETS)
    # In process, no step asks for Ray: the kinds say so and the execution resource is not Ray's.
    assert not any("ray" in a.specs_by_key[a.key].kinds for a in assets)
    assert type(defs.resources["execution"]).__name__ == "InProcessExecution"
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(assets, partition_key=SHARD, instance=instance, resources=defs.resources)
        assert result.success
        materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert materialized == set(SHARD_ASSETS)
    declared = {
        "raw_archives": RAW_CHECKS,
        "transcoded_videos": TRANSCODE_CHECKS,
        "depth_maps": DEPTH_CHECKS,
        "transcripts": TRANSCRIPT_CHECKS,
        "frame_stats": FRAME_STATS_CHECKS,
        "clip_embeddings": EMBEDDING_CHECKS,
    }
    expected = {(asset, c.name) for asset, specs in declared.items() for c in specs}
    assert set(checks) == expected
    assert all(e.passed and e.partition == SHARD for e in checks.values()), [
        k for k, e in checks.items() if not e.passed
    ]

    rows = {
        r["video_id"].split("_")[0]: r
        for r in lance.dataset(str(tmp_path / "data" / "lance" / "custom.lance"))
        .to_table(
            columns=[
                "video_id",
                "shard",
                "status",
                "depth_status",
                "depth_frames",
                "depth_model",
                "transcript_status",
                "frame_stats_status",
                "embedding",
                "embedding_status",
                "embedding_model",
                "embedding_frames",
            ]
        )
        .to_pylist()
    }
    assert set(rows) == {"vOice000001", "mUte0000001"}
    assert all(r["shard"] == SHARD and r["status"] == "ok" for r in rows.values())
    assert all(r["depth_status"] == "ok" and r["depth_frames"] > 0 for r in rows.values())
    assert all(r["depth_model"].startswith("RANDOM-WEIGHTS") for r in rows.values())
    assert all(r["frame_stats_status"] == "ok" for r in rows.values())
    assert all(r["embedding_status"] == "ok" and len(r["embedding"]) == 32 for r in rows.values())
    assert all(r["embedding_model"].startswith("RANDOM-WEIGHTS") for r in rows.values())
    assert all(len(r["embedding_frames"]) == 8 for r in rows.values())  # 1 s clips: 8 of their frames
    assert rows["mUte0000001"]["transcript_status"] == "no_audio"
    assert rows["vOice000001"]["transcript_status"] in {"ok", "no_speech"}
    if not ray_before:
        assert "ray" not in sys.modules  # nothing on the way imported Ray
