"""`qa_report` through Dagster over a real shard: transcoded and given depth (from the tiny model) by
the in-process executors, so that it runs in the fast tier; the Ray executors have their own tests."""

from __future__ import annotations

import base64
import io
import re
import shutil

import dagster as dg
import lance
import pytest
from PIL import Image

from kinetics_assets.defs.qa_report import qa_report
from kinetics_assets.depth.model import DepthModelConfig
from kinetics_assets.ingest.annotations import load_annotations
from kinetics_assets.ingest.shards import Shard
from kinetics_assets.media.transcode import TranscodeConfig
from kinetics_assets.speech.model import SpeechModelConfig
from kinetics_assets.stages import DepthStage, InProcessExecutor, TranscriptStage, run_column_stage_shard
from kinetics_assets.steps.in_process_transcode import InProcessTranscodeExecutor
from kinetics_assets.steps.transcode import transcode_step
from kinetics_assets.table import SCALAR_COLUMNS, commit_shard, write_shard_fragments
from resources import StorageResource
from tests.harness.shards import build_shard
from tests.harness.tiny_depth import save_tiny_depth_model
from tests.harness.tiny_whisper import TINY_WHISPER_ID, save_tiny_whisper_model

PNG_IN_MARKDOWN = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture(scope="module")
def real_shard(tmp_path_factory):
    """part_0 transcoded (good clips and defective ones) with depth for every ok clip."""
    root = tmp_path_factory.mktemp("qa_report")
    spec = build_shard(root / "src", "part_0", n_clips=2, layout="flat", with_defects=True)
    uri = str(root / "table.lance")
    shard = Shard("part_0", "archive", ("http://127.0.0.1:1/part_0.tar.gz",), "k400", "part_0")
    transcode_step(
        shard,
        spec.archive_path,
        lance_uri=uri,
        storage_options=None,
        annotations=load_annotations(spec.annotations_path),
        config=TranscodeConfig(preset="ultrafast"),
        executor=InProcessTranscodeExecutor(),
        log=lambda _: None,
    )
    transcoded_version = lance.dataset(uri).version
    model = DepthModelConfig(local_path=str(save_tiny_depth_model(root / "tiny")), batch_size=4, input_short_side=126)
    result = run_column_stage_shard(
        "part_0",
        DepthStage(model=model),
        lance_uri=uri,
        storage_options=None,
        executor=InProcessExecutor(),
        log=lambda _: None,
    )
    assert result.ok == len(spec.good_ids)
    return {"spec": spec, "uri": uri, "root": root, "transcoded_version": transcoded_version}


def _materialize(uri: str, data_root, dagster_home, materialized_partitions, run_config=None):
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for partition in materialized_partitions:
            instance.report_runless_asset_event(dg.AssetMaterialization("transcoded_videos", partition=partition))
        result = dg.materialize(
            [qa_report],
            instance=instance,
            resources={"storage": StorageResource(data_root=str(data_root), lance_uri=uri)},
            run_config=run_config,
            raise_on_error=False,
        )
    mats = result.get_asset_materialization_events()
    metadata = mats[0].event_specific_data.materialization.metadata if mats else {}
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return result, metadata, checks


def _pngs(markdown: str) -> list[Image.Image]:
    images = [Image.open(io.BytesIO(base64.b64decode(m))) for m in PNG_IN_MARKDOWN.findall(markdown)]
    for image in images:
        image.load()
        assert image.format == "PNG"
    return images


def test_qa_report_over_a_real_shard(real_shard, dagster_home, tmp_path):
    spec, uri = real_shard["spec"], real_shard["uri"]
    result, metadata, checks = _materialize(uri, tmp_path, dagster_home, ["part_0"])
    assert result.success
    assert metadata["lance_version"].value == lance.dataset(uri).version
    assert metadata["total_ok"].value == len(spec.good_ids)
    assert metadata["total_failed"].value == len(spec.defective_ids)
    assert metadata["total_depth_ok"].value == len(spec.good_ids)
    assert metadata["dagster/row_count"].value == len(spec.video_ids)
    for name in (
        "shard_counts",
        "failure_causes",
        "duration_histogram",
        "resolution_histogram",
        "fps_histogram",
        "label_coverage",
        "depth_coverage",
    ):
        assert isinstance(metadata[name], dg.TableMetadataValue), name
    shard_row = metadata["shard_counts"].records[0].data
    assert (shard_row["shard"], shard_row["ok"], shard_row["failed"]) == (
        "part_0",
        len(spec.good_ids),
        len(spec.defective_ids),
    )
    depth_row = metadata["depth_coverage"].records[0].data
    assert (depth_row["depth_ok"], depth_row["depth_missing"]) == (len(spec.good_ids), 0)
    labels = {r.data["label"] for r in metadata["label_coverage"].records}
    assert {spec.labels[v] for v in spec.good_ids} <= labels

    for name in ("duration_histogram_png", "resolution_histogram_png", "fps_histogram_png"):
        (image,) = _pngs(metadata[name].value)
        assert image.width > 200
        assert image.height > 150
    (sheet,) = _pngs(metadata["contact_sheet"].value)
    assert sheet.width > 400
    assert sheet.height > 100
    assert sorted(metadata["contact_sheet_videos"].value) == sorted(spec.good_ids)
    # The sheet holds pictures, not blank panels: a frame and a colour-mapped depth have many colours.
    assert len(sheet.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 200

    assert set(checks) == {"video_id_unique", "materialized_shards_in_table", "ok_rows_have_video_bytes"}
    assert all(c.passed for c in checks.values()), {k: c.metadata for k, c in checks.items()}
    # No transcripts yet: the transcript tables say so.
    for name in ("transcript_status", "transcript_labels"):
        assert metadata[name].value == "_no transcripts yet (materialize transcripts)_", name
    assert (
        metadata["transcript_languages"].value == metadata["transcript_examples"].value == "_no clip with speech yet_"
    )


def _markdown_rows(markdown: str) -> list[dict[str, str]]:
    header, _, *rows = markdown.splitlines()
    names = [c.strip() for c in header.strip("|").split("|")]
    return [dict(zip(names, (c.strip() for c in row.strip("|").split("|")), strict=True)) for row in rows]


def test_transcripts_in_the_report(real_shard, dagster_home, tmp_path):
    """The real transcripts step (tiny random Whisper, in process) and the report's transcript tables."""
    uri = str(tmp_path / "table.lance")
    shutil.copytree(real_shard["uri"], uri)
    model = SpeechModelConfig(
        model_id=TINY_WHISPER_ID,
        local_path=str(save_tiny_whisper_model(tmp_path / "whisper")),
        batch_size=2,
        device="cpu",
        max_new_tokens=16,
    )
    step = run_column_stage_shard(
        "part_0",
        TranscriptStage(model=model, pretrained=False),
        lance_uri=uri,
        storage_options=None,
        executor=InProcessExecutor(),
        log=lambda _: None,
    )
    counts = {status: n for status, n in step.counts.items() if n}
    assert counts.get("no_audio")  # the harness's first clip has no audio track
    result, metadata, _ = _materialize(uri, tmp_path, dagster_home, ["part_0"])
    assert result.success
    statuses = _markdown_rows(metadata["transcript_status"].value)
    assert {r["transcript_status"]: int(r["clips"]) for r in statuses} == counts
    assert sum(float(r["share"]) for r in statuses) == pytest.approx(1.0, abs=0.01)
    labels = _markdown_rows(metadata["transcript_labels"].value)
    spec = real_shard["spec"]
    assert {r["label"] for r in labels} == {spec.labels[v] for v in spec.good_ids}
    assert sum(int(r["clips"]) for r in labels) == sum(counts.values())
    assert sum(int(r["with_speech"]) for r in labels) == counts.get("ok", 0)


def test_pinned_version(real_shard, dagster_home, tmp_path):
    version = real_shard["transcoded_version"]
    config = {"ops": {"qa_report": {"config": {"version": version, "contact_sheet_videos": 2}}}}
    result, metadata, _ = _materialize(real_shard["uri"], tmp_path, dagster_home, [], run_config=config)
    assert result.success
    assert metadata["lance_version"].value == version
    assert metadata["total_depth_ok"].value == 0  # depth came in a later version
    assert len(metadata["contact_sheet_videos"].value) == 2


def test_checks_fail_on_duplicates_missing_shards_and_empty_videos(real_shard, dagster_home, tmp_path):
    uri = str(tmp_path / "table.lance")
    shutil.copytree(real_shard["uri"], uri)
    ds = lance.dataset(uri)
    ok = ds.to_table(columns=SCALAR_COLUMNS, filter="status = 'ok'", with_row_id=True).to_pylist()
    # The same clip again under another shard (the unenforced primary key lets it in), and an ok row
    # without video bytes.
    copy = dict(ok[0], shard="part_0_again", video=ds.take_blobs("video", ids=[ok[0]["_rowid"]])[0].read())
    empty = dict(ok[1], video_id="hollow_000000_000010", shard="part_0_again", bytes=0, video=None)
    for row in (copy, empty):
        row.pop("_rowid")
    commit_shard(uri, "part_0_again", write_shard_fragments([copy, empty], uri))

    result, metadata, checks = _materialize(uri, tmp_path, dagster_home, ["part_0", "part_7"])
    assert result.success  # the checks are not blocking: the report is still there to read
    assert metadata["total_videos"].value == len(real_shard["spec"].video_ids) + 2
    duplicated = checks["video_id_unique"]
    assert not duplicated.passed
    assert duplicated.metadata["duplicated_ids"].value == 1
    assert duplicated.metadata["examples"].value[0]["video_id"] == ok[0]["video_id"]
    absent = checks["materialized_shards_in_table"]
    assert not absent.passed
    assert absent.metadata["absent"].value == ["part_7"]
    hollow = checks["ok_rows_have_video_bytes"]
    assert not hollow.passed
    assert hollow.metadata["examples"].value[0]["video_id"] == "hollow_000000_000010"


def test_no_table_names_the_uri(dagster_home, tmp_path):
    result, _, _ = _materialize(str(tmp_path / "none.lance"), tmp_path, dagster_home, [])
    assert not result.success
    failure = result.failure_data_for_node("qa_report")
    assert "none.lance" in str(failure.error)
    assert "transcoded_videos" in str(failure.error)
