"""The transcripts asset through Dagster on a real instance, in the test process (the execution
resource in process, no Ray: the demo runs it on Ray): upstream assets, then transcripts with the
tiny random Whisper given as SpeechModelResource(local_path=...), and the two ways it must fail."""

from __future__ import annotations

import os
import tarfile

import dagster as dg
import lance
import pytest

from kinetics_assets import definitions
from resources import SpeechModelResource
from tests.harness.audio_clips import make_av_clip
from tests.harness.http_server import FaultyFileServer
from tests.harness.tiny_whisper import save_tiny_whisper_model

SHARD = "speech_val_001"
# member -> the audio it carries: the random Whisper writes (noise) text for the voice, the speech
# gate keeps the tone and silence from it, and the clip without audio never decodes any.
CLIPS = {
    "talking/vOice000001_000000_000010.mp4": "voice",
    "talking/tOne0000001_000005_000015.mp4": "tone",
    "talking/sIlence0001_000001_000011.mp4": "silence",
    "talking/mUte0000001_000002_000012.mp4": "none",
}


def _messages(error) -> str:
    out = []
    while error is not None:
        out.append(error.message)
        error = error.cause
    return " | ".join(out)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech_served")
    clips = tmp_path_factory.mktemp("speech_clips")
    with tarfile.open(root / f"{SHARD}.tar.gz", "w:gz") as tar:
        for i, (member, audio) in enumerate(CLIPS.items()):
            tar.add(make_av_clip(clips / f"{i}.mp4", audio=audio, seconds=2.0, seed=i), arcname=member)
    with FaultyFileServer(root) as server:
        yield server


def test_transcripts_asset_on_a_dagster_instance(served, tmp_path, dagster_home, monkeypatch):
    manifest = tmp_path / "manifest.txt"
    manifest.write_text(served.url(f"{SHARD}.tar.gz") + "\n")
    tiny = save_tiny_whisper_model(tmp_path / "tiny-whisper")
    missing = tmp_path / "no-such-whisper"
    for name in [k for k in os.environ if k.startswith(("KINETICS_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("KINETICS_MANIFEST", str(manifest))
    monkeypatch.setenv("KINETICS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("KINETICS_EXECUTION", "in_process")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    defs = definitions.defs()
    by_key = {a.key.to_user_string(): a for a in defs.assets}
    transcripts = by_key["transcripts"]

    def run(instance, assets, model_path, config=None) -> dict:
        resources = {**defs.resources, "speech_model": SpeechModelResource(local_path=str(model_path))}
        result = dg.materialize(
            assets, partition_key=SHARD, instance=instance, resources=resources, raise_on_error=False, run_config=config
        )
        failures = [_messages(e.step_failure_data.error) for e in result.all_events if e.is_step_failure]
        checks = {e.check_name: [e.passed, e.partition] for e in result.get_asset_check_evaluations()}
        return {"success": result.success, "failures": failures, "checks": checks}

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        out = {
            "missing_upstream": run(instance, [transcripts], tiny),
            "upstream_and_transcripts": run(
                instance, [by_key["raw_archives"], by_key["transcoded_videos"], transcripts], tiny
            ),
            "missing_model": run(
                instance, [transcripts], missing, {"ops": {"transcripts": {"config": {"force": True}}}}
            ),
        }

    # Before its upstream exists, the step fails naming the shard and the selection that covers it.
    first = out["missing_upstream"]
    assert not first["success"]
    assert any(SHARD in f and "'*transcripts'" in f for f in first["failures"]), first

    done = out["upstream_and_transcripts"]
    assert done["success"], done
    # Every check of the three assets passed, recorded for the shard's partition.
    assert all(passed and partition == SHARD for passed, partition in done["checks"].values()), done
    assert {
        "every_ok_video_has_transcript_status",
        "transcript_segments_within_clip_and_ordered",
        "transcript_text_empty_exactly_when_not_ok",
    } <= set(done["checks"]), done
    rows = (
        lance.dataset(str(tmp_path / "data" / "lance" / "custom.lance"))
        .to_table(columns=["video_id", "transcript_status", "transcript_text", "transcript_pretrained"])
        .to_pylist()
    )
    status = {r["video_id"].split("_")[0]: r["transcript_status"] for r in rows}
    assert status == {
        "vOice000001": "ok",
        "tOne0000001": "no_speech",
        "sIlence0001": "no_speech",
        "mUte0000001": "no_audio",
    }
    assert all(r["transcript_pretrained"] is False for r in rows)  # the tiny model is marked random
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("transcripts"))
    mat = event.asset_materialization
    assert mat.partition == SHARD
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert (meta["clips"], meta["clips_with_speech"]) == (4, 1)
    assert (meta["status_ok"], meta["status_no_speech"], meta["status_no_audio"], meta["status_failed"]) == (1, 2, 1, 0)
    assert sum(meta["languages"].values()) == 1
    assert meta["pretrained_weights"] is False
    assert meta["real_time_factor"] > 0
    assert meta["audio_s"] == pytest.approx(6.0, abs=0.3)
    assert meta["model_id"].startswith("RANDOM-WEIGHTS model at")
    assert meta["device"] == "cpu"
    assert "| video_id | language | text |" in meta["examples"]
    assert "vOice000001" in meta["examples"]

    # A model that cannot be found fails the step, naming the model.
    last = out["missing_model"]
    assert not last["success"]
    assert any("Speech model" in f and "no-such-whisper" in f for f in last["failures"]), last
