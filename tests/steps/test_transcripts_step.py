"""transcripts for whole shards: real Lance tables, a tiny random Whisper saved with save_pretrained,
the in-process executor, and once the Ray executor on a local Ray."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import av
import lance
import pyarrow as pa
import pytest

from kinetics_assets.speech.model import SpeechModelConfig
from kinetics_assets.stages import InProcessExecutor, TranscriptStage, run_column_stage, run_column_stage_shard
from kinetics_assets.stages.transcript_checks import check_shard_transcripts
from kinetics_assets.steps.failures import ShardFailure, UpstreamMissing
from kinetics_assets.table import commit_shard, write_shard_fragments
from tests.harness.audio_clips import make_av_clip
from tests.harness.tiny_whisper import TINY_WHISPER_ID, save_tiny_whisper_model

# (video id suffix, audio, seconds); "corrupt" rows are ok in the table but their bytes do not decode.
CLIPS = [
    ("voice", "voice", 3.0),
    ("tone", "tone", 2.0),
    ("silence", "silence", 2.0),
    ("mute", "none", 2.0),
    ("corrupt", "corrupt", 2.0),
    ("voice2", "voice", 4.0),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> SpeechModelConfig:
    folder = save_tiny_whisper_model(tmp_path_factory.mktemp("whisper") / "tiny")
    return SpeechModelConfig(
        model_id=TINY_WHISPER_ID, local_path=str(folder), batch_size=2, device="cpu", max_new_tokens=16
    )


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    out = {}
    for name, audio, seconds in CLIPS:
        kind = "tone" if audio == "corrupt" else audio
        data = make_av_clip(folder / f"{name}.mp4", audio=kind, seconds=seconds, seed=len(name)).read_bytes()
        out[name] = b"\x00not a video\x00" * 64 if audio == "corrupt" else data
    return out


def transcripts_step(shard: str, *, model: SpeechModelConfig, executor=None, pretrained: bool = True, **kwargs):
    """One shard through the transcript stage, always done, raising what fails."""
    stage = TranscriptStage(model=model, pretrained=pretrained)
    return run_column_stage_shard(shard, stage, executor=executor or InProcessExecutor(), **kwargs)


def transcript_shards(shards: list[str], *, model: SpeechModelConfig, executor=None, **kwargs):
    return list(
        run_column_stage(TranscriptStage(model=model), shards, executor=executor or InProcessExecutor(), **kwargs)
    )


def publish(uri: str, shard: str, clip_bytes: dict[str, bytes], names=None) -> list[str]:
    """A shard's rows as the transcode step leaves them (ok rows with their video), plus one failed row."""
    rows = []
    for name, _, seconds in CLIPS:
        if names is not None and name not in names:
            continue
        rows.append(
            {
                "video_id": f"{shard}-{name}",
                "shard": shard,
                "status": "ok",
                "video": clip_bytes[name],
                "duration_s": seconds,
                "processed_at": datetime.now(UTC),
            }
        )
    rows.append({"video_id": f"{shard}-broken", "shard": shard, "status": "failed", "error_type": "decode"})
    commit_shard(uri, shard, write_shard_fragments(rows, uri))
    return [r["video_id"] for r in rows]


def _transcripts(uri: str) -> dict[str, dict]:
    rows = (
        lance.dataset(uri)
        .to_table(
            columns=[
                "video_id",
                "duration_s",
                "transcript_status",
                "transcript_error",
                "transcript_text",
                "transcript_language",
                "transcript_language_probability",
                "transcript_segments",
                "transcript_model",
                "transcript_model_revision",
                "transcript_pretrained",
                "transcript_processed_at",
            ]
        )
        .to_pylist()
    )
    return {r["video_id"]: r for r in rows}


def test_status_rules_for_every_kind_of_clip(tmp_path, tiny_model, clip_bytes):
    uri = str(tmp_path / "t.lance")
    publish(uri, "s1", clip_bytes)
    video_files = {f.metadata.files[0].path for f in lance.dataset(uri).get_fragments()}
    result = transcripts_step(
        "s1",
        lance_uri=uri,
        storage_options=None,
        model=tiny_model,
        pretrained=False,
        log=lambda _: None,
    )
    assert all(v.passed for v in result.checks.values()), result.checks
    assert result.counts == {"ok": 2, "no_audio": 1, "no_speech": 2, "failed": 1}
    assert result.videos == 6
    assert result.model.model_id == TINY_WHISPER_ID
    assert result.model.revision == "local"
    assert 0 < sum(r.speech_s for r in result.rows) < sum(r.audio_s for r in result.rows)
    # What the asset's metadata shows: the clips the gate heard, their languages and example lines.
    assert sum(1 for r in result.rows if r.speech_s > 0) == 2
    transcribed = [r for r in result.rows if r.status == "ok"]
    assert sorted(r.video_id for r in transcribed) == ["s1-voice", "s1-voice2"]
    assert all(r.text and r.language for r in transcribed)
    rows = _transcripts(uri)
    assert {f.metadata.files[0].path for f in lance.dataset(uri).get_fragments()} >= video_files
    assert rows["s1-mute"]["transcript_status"] == "no_audio"
    assert rows["s1-tone"]["transcript_status"] == rows["s1-silence"]["transcript_status"] == "no_speech"
    assert rows["s1-corrupt"]["transcript_status"] == "failed"
    assert "AudioDecodeError" in rows["s1-corrupt"]["transcript_error"]
    assert "s1-corrupt" in rows["s1-corrupt"]["transcript_error"]
    assert rows["s1-broken"]["transcript_status"] is None  # only ok videos are transcribed
    for name in ("voice", "voice2"):
        row = rows[f"s1-{name}"]
        assert row["transcript_status"] == "ok"
        assert row["transcript_text"]
        assert row["transcript_language"]
        assert 0 < row["transcript_language_probability"] <= 1
        assert row["transcript_segments"], "the random model writes timestamped segments"
        starts = [s["start"] for s in row["transcript_segments"]]
        assert starts == sorted(starts)
        assert all(0 <= s["start"] <= s["end"] <= row["duration_s"] for s in row["transcript_segments"])
    for name in ("mute", "tone", "silence", "corrupt"):
        row = rows[f"s1-{name}"]
        assert row["transcript_text"] == ""
        assert row["transcript_segments"] == []
        assert row["transcript_language"] is None
    for row in (r for r in rows.values() if r["transcript_status"]):
        assert (row["transcript_model"], row["transcript_model_revision"]) == (TINY_WHISPER_ID, "local")
        assert row["transcript_pretrained"] is False
        assert row["transcript_processed_at"] is not None


def test_rerun_is_idempotent_and_a_transcribed_shard_is_skipped(tmp_path, tiny_model, clip_bytes):
    uri = str(tmp_path / "t.lance")
    publish(uri, "s1", clip_bytes, names={"voice", "tone", "mute"})
    transcriber = tiny_model
    transcripts_step("s1", lance_uri=uri, storage_options=None, model=transcriber, log=lambda _: None)
    columns = ["video_id", "transcript_status", "transcript_text", "transcript_segments"]
    first = lance.dataset(uri).to_table(columns=columns).sort_by("video_id")
    transcripts_step("s1", lance_uri=uri, storage_options=None, model=transcriber, log=lambda _: None)
    second = lance.dataset(uri).to_table(columns=columns).sort_by("video_id")
    assert first.equals(second)
    assert lance.dataset(uri).count_rows() == 4
    version = lance.dataset(uri).version
    lines: list[str] = []
    (skipped,) = transcript_shards(["s1"], lance_uri=uri, storage_options=None, model=transcriber, log=lines.append)
    assert skipped.unchanged
    assert lance.dataset(uri).version == version
    assert any("skipped" in line for line in lines)
    assert all(v.passed for v in skipped.checks.values())
    # A different model is not "the same transcript": the shard is done again.
    other = SpeechModelConfig(**{**tiny_model.__dict__, "model_id": "tests/other-whisper"})
    (redone,) = transcript_shards(["s1"], lance_uri=uri, storage_options=None, model=other, log=lambda _: None)
    assert not redone.unchanged
    assert lance.dataset(uri).version > version
    assert {r["transcript_model"] for r in _transcripts(uri).values() if r["transcript_status"]} == {
        "tests/other-whisper"
    }


def test_a_failed_transcript_is_tried_again(tmp_path, tiny_model, clip_bytes):
    uri = str(tmp_path / "t.lance")
    publish(uri, "s1", clip_bytes, names={"voice", "corrupt"})
    transcriber = tiny_model
    transcripts_step("s1", lance_uri=uri, storage_options=None, model=transcriber, log=lambda _: None)
    (again,) = transcript_shards(["s1"], lance_uri=uri, storage_options=None, model=transcriber, log=lambda _: None)
    assert not again.unchanged
    assert again.counts["failed"] == 1


def test_two_shards_one_model_load_one_commit_each_and_a_missing_shard_fails_alone(tmp_path, tiny_model, clip_bytes):
    uri = str(tmp_path / "t.lance")
    publish(uri, "s1", clip_bytes, names={"voice", "tone"})
    publish(uri, "s2", clip_bytes, names={"voice2", "mute"})
    version = lance.dataset(uri).version
    transcriber = tiny_model
    results = list(
        transcript_shards(
            ["s1", "s9", "s2"], lance_uri=uri, storage_options=None, model=transcriber, log=lambda _: None
        )
    )
    failures = [r for r in results if isinstance(r, ShardFailure)]
    done = {r.shard: r for r in results if not isinstance(r, ShardFailure)}
    assert [f.shard for f in failures] == ["s9"]
    assert "UpstreamMissing" in failures[0].error
    assert set(done) == {"s1", "s2"}
    assert all(v.passed for r in done.values() for v in r.checks.values())
    # Adding the columns is one commit, then one commit per shard.
    assert lance.dataset(uri).version == version + 3
    assert sorted(r.version for r in done.values()) == [version + 2, version + 3]
    assert done["s1"].model_load_s == done["s2"].model_load_s > 0  # loaded once for both
    statuses = {k: v["transcript_status"] for k, v in _transcripts(uri).items()}
    assert statuses == {
        "s1-voice": "ok",
        "s1-tone": "no_speech",
        "s1-broken": None,
        "s2-voice2": "ok",
        "s2-mute": "no_audio",
        "s2-broken": None,
    }


def test_two_shards_committing_at_once_keep_each_others_transcripts(tmp_path, tiny_model, clip_bytes):
    uri = str(tmp_path / "t.lance")
    publish(uri, "s1", clip_bytes, names={"voice", "mute"})
    publish(uri, "s2", clip_bytes, names={"tone", "voice2"})
    errors: list[BaseException] = []

    def run(shard):
        try:
            transcripts_step(
                shard,
                lance_uri=uri,
                storage_options=None,
                model=tiny_model,
                log=lambda _: None,
            )
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in ("s1", "s2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    statuses = {k: v["transcript_status"] for k, v in _transcripts(uri).items() if not k.endswith("broken")}
    assert statuses == {"s1-voice": "ok", "s1-mute": "no_audio", "s2-tone": "no_speech", "s2-voice2": "ok"}


def test_missing_upstream_names_the_fix(tmp_path, tiny_model):
    with pytest.raises(UpstreamMissing, match=r"s1.*transcoded_videos.*'\*transcripts'"):
        transcripts_step(
            "s1",
            lance_uri=str(tmp_path / "none.lance"),
            storage_options=None,
            model=tiny_model,
            log=lambda _: None,
        )


def test_checks_catch_what_they_promise(tmp_path, clip_bytes):
    from kinetics_assets.steps.checks import Verdict
    from kinetics_assets.table import ensure_transcript_columns, write_transcripts

    uri = str(tmp_path / "t.lance")
    publish(uri, "s1", clip_bytes, names={"voice", "tone", "mute"})
    ensure_transcript_columns(uri)
    write_transcripts(
        uri,
        [
            {
                "video_id": "s1-voice",
                "transcript_status": "ok",
                "transcript_text": "hi",
                "transcript_segments": [
                    {"start": 2.0, "end": 2.5, "text": "a"},
                    {"start": 1.0, "end": 9.0, "text": "b"},
                ],
            },
            {"video_id": "s1-tone", "transcript_status": "no_speech", "transcript_text": "music"},
        ],
    )
    checks = check_shard_transcripts(lance.dataset(uri), "s1")
    assert checks["every_ok_video_has_transcript_status"].passed is False
    assert checks["every_ok_video_has_transcript_status"].details["without_status"] == ["s1-mute"]
    assert checks["transcript_segments_within_clip_and_ordered"] == Verdict(False, {"problems": ["s1-voice"]})
    assert checks["transcript_text_empty_exactly_when_not_ok"] == Verdict(False, {"problems": ["s1-tone"]})


def test_audio_is_read_from_the_stored_blob(clip_bytes):
    # The generated clips really carry what the statuses above rely on.
    import io

    with av.open(io.BytesIO(clip_bytes["mute"])) as c:
        assert not c.streams.audio
    with av.open(io.BytesIO(clip_bytes["voice"])) as c:
        assert c.streams.audio


@pytest.mark.e2e  # a local Ray in the test process
def test_ray_executor_batches_across_shards_and_matches_the_in_process_one(ray_local, tmp_path, tiny_model, clip_bytes):
    from kinetics_assets.distributed.options import RayStageOptions
    from kinetics_assets.distributed.stage_executor import RayStageExecutor

    uri = str(tmp_path / "t.lance")
    publish(uri, "s1", clip_bytes, names={"voice", "tone", "corrupt"})
    publish(uri, "s2", clip_bytes, names={"voice2", "mute", "silence"})
    ray_run = RayStageExecutor(options=RayStageOptions(max_in_flight=4, torch_threads=1))
    results = {
        r.shard: r
        for r in transcript_shards(
            ["s1", "s2"], lance_uri=uri, storage_options=None, model=tiny_model, executor=ray_run, log=lambda _: None
        )
    }
    assert set(results) == {"s1", "s2"}
    assert all(v.passed for r in results.values() for v in r.checks.values())
    assert results["s1"].model.device == "cpu"
    assert results["s1"].model_load_s > 0
    on_ray = {
        k: (v["transcript_status"], v["transcript_text"], v["transcript_language"])
        for k, v in _transcripts(uri).items()
    }
    assert {k: v[0] for k, v in on_ray.items()} == {
        "s1-voice": "ok",
        "s1-tone": "no_speech",
        "s1-corrupt": "failed",
        "s1-broken": None,
        "s2-voice2": "ok",
        "s2-mute": "no_audio",
        "s2-silence": "no_speech",
        "s2-broken": None,
    }
    # The same model in this process writes the same transcripts.
    uri2 = str(tmp_path / "t2.lance")
    publish(uri2, "s1", clip_bytes, names={"voice", "tone", "corrupt"})
    publish(uri2, "s2", clip_bytes, names={"voice2", "mute", "silence"})
    list(
        transcript_shards(
            ["s1", "s2"],
            lance_uri=uri2,
            storage_options=None,
            model=tiny_model,
            log=lambda _: None,
        )
    )
    in_process = {
        k: (v["transcript_status"], v["transcript_text"], v["transcript_language"])
        for k, v in _transcripts(uri2).items()
    }
    assert on_ray == in_process


@pytest.mark.e2e  # a local Ray in the test process
def test_ray_executor_fails_once_naming_a_missing_model(ray_local, tmp_path, clip_bytes):
    from kinetics_assets.distributed.stage_executor import RayStageExecutor

    uri = str(tmp_path / "t.lance")
    publish(uri, "s1", clip_bytes, names={"voice"})
    missing = SpeechModelConfig(local_path=str(tmp_path / "no-whisper-here"))
    with pytest.raises(Exception, match="no-whisper-here"):
        transcripts_step(
            "s1", lance_uri=uri, storage_options=None, model=missing, executor=RayStageExecutor(), log=lambda _: None
        )
    assert lance.dataset(uri).to_table(columns=["transcript_status"])["transcript_status"].null_count == 2


@pytest.mark.e2e  # a local Ray in the test process
@pytest.mark.timeout(400)
def test_ray_executor_with_a_window_smaller_than_a_batch_still_finishes(ray_local, tmp_path, tiny_model, clip_bytes):
    from kinetics_assets.distributed.options import RayStageOptions
    from kinetics_assets.distributed.stage_executor import RayStageExecutor

    uri = str(tmp_path / "t.lance")
    publish(uri, "s1", clip_bytes, names={"voice", "voice2", "tone"})
    wide_batch = SpeechModelConfig(**{**tiny_model.__dict__, "batch_size": 8})
    executor = RayStageExecutor(options=RayStageOptions(max_in_flight=1, torch_threads=1))
    result = transcripts_step(
        "s1", lance_uri=uri, storage_options=None, model=wide_batch, executor=executor, log=lambda _: None
    )
    assert result.counts == {"ok": 2, "no_audio": 0, "no_speech": 1, "failed": 0}


def test_the_result_records_and_checks_its_own_commit_not_a_later_one(tmp_path, tiny_model, clip_bytes, monkeypatch):
    # A concurrent run of the same shard writes transcripts the checks reject and commits the moment
    # this step's write has landed: the result must still name and check the commit this step made.
    from lance.dataset import MergeInsertBuilder

    uri = str(tmp_path / "t.lance")
    ids = publish(uri, "s1", clip_bytes, names={"voice", "mute"})
    real_execute = MergeInsertBuilder.execute
    wrong = [{"video_id": v, "transcript_status": "no_speech", "transcript_text": "music"} for v in ids]
    later: list[int] = []

    def execute_then_a_later_run_commits(self, *args, **kwargs):
        stats = real_execute(self, *args, **kwargs)
        if not later:
            newest = lance.dataset(uri)
            builder = newest.merge_insert("video_id").when_matched_update_all().write_mode("rewrite_columns")
            real_execute(builder, pa.Table.from_pylist(wrong))
            later.append(newest.version)
        return stats

    monkeypatch.setattr(MergeInsertBuilder, "execute", execute_then_a_later_run_commits)
    result = transcripts_step("s1", lance_uri=uri, storage_options=None, model=tiny_model, log=lambda _: None)
    monkeypatch.undo()
    assert later == [result.version + 1]
    assert all(v.passed for v in result.checks.values()), result.checks
    assert not check_shard_transcripts(lance.dataset(uri), "s1")["transcript_text_empty_exactly_when_not_ok"].passed
