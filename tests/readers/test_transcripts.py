"""Transcripts served beside the clips (LanceClipDataset and read_clips, `with_transcript=True`).

The transcript columns are written with the table's own functions. Segment boundaries are placed on
the exact frame times the reader reports, so the overlap rule is checked at its edges.
"""

from __future__ import annotations

import lance
import pytest
import torch
from torch.utils.data import DataLoader

from kinetics_assets.media.sampling import ClipSampling
from kinetics_assets.readers.ray_clips import read_clips
from kinetics_assets.readers.torch_dataset import LanceClipDataset, clip_loader, collate_clips
from kinetics_assets.table import ensure_transcript_columns, write_transcripts
from tests.readers.test_video_dataset import SPECS, build_table

S1 = [s for s in SPECS if s.shard == "s1"]  # vid_a (60 frames at 25 fps), vid_b (80), vid_c (10)
# Two clips of 10 consecutive frames per video: vid_a's are frames 0-9 and 50-59.
SAMPLING = ClipSampling(num_frames=10, start="uniform", clips_per_video=2)


def _segment(start: float, end: float, text: str) -> dict:
    return {"start": start, "end": end, "text": text}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """s1 with vid_a transcribed (segments on the clips' edges), vid_b without speech, vid_c never
    transcribed; `before` is the version without transcript columns."""
    uri = str(tmp_path_factory.mktemp("transcripts") / "videos.lance")
    build_table(uri, S1)
    before = lance.dataset(uri).version
    plain = LanceClipDataset(uri, sampling=SAMPLING, where="video_id = 'vid_a'", with_depth=False)
    clip0, clip1 = (plain[i]["timestamps"].tolist() for i in range(2))
    assert plain[0]["frame_indices"].tolist() == list(range(10))
    assert plain[1]["frame_indices"].tolist() == list(range(50, 60))
    segments = [
        _segment(clip0[0], clip0[3], "inside the first clip"),
        _segment(clip0[-1], clip0[-1] + 0.1, "starts on the first clip's last frame"),
        _segment(clip0[-1] + 0.1, clip1[0], "ends on the second clip's first frame"),
        _segment(clip1[0] - 0.1, clip1[0] + 1e-6, "ends just after the second clip's first frame"),
        _segment(clip1[-1], clip1[-1] + 1.0, "starts on the second clip's last frame"),
    ]
    ensure_transcript_columns(uri)
    write_transcripts(
        uri,
        [
            {
                "video_id": "vid_a",
                "transcript_status": "ok",
                "transcript_text": "the whole text",
                "transcript_language": "en",
                "transcript_language_probability": 0.9,
                "transcript_segments": segments,
                "transcript_model": "tiny",
            },
            {
                "video_id": "vid_b",
                "transcript_status": "no_speech",
                "transcript_text": "",
                "transcript_segments": [],
                "transcript_model": "tiny",
            },
        ],
    )
    return {"uri": uri, "before": before, "segments": segments}


def _texts(item: dict) -> list[str]:
    return [s["text"] for s in item["transcript_segments"]]


def test_segments_overlapping_each_clip_exactly_at_the_edges(table):
    ds = LanceClipDataset(table["uri"], sampling=SAMPLING, shards=["s1"], with_depth=False, with_transcript=True)
    assert ds.with_transcript
    items = {(ds[i]["video_id"], ds[i]["clip"]): ds[i] for i in range(len(ds))}
    first, second = items[("vid_a", 0)], items[("vid_a", 1)]
    assert _texts(first) == ["inside the first clip", "starts on the first clip's last frame"]
    assert _texts(second) == ["ends just after the second clip's first frame", "starts on the second clip's last frame"]
    # Times stay on the video's clock, exactly as stored.
    assert first["transcript_segments"][1] == table["segments"][1]
    assert second["transcript_segments"][1]["start"] == second["timestamps"][-1].item()
    for item in (first, second):
        assert (item["transcript"], item["transcript_status"], item["transcript_language"]) == (
            "the whole text",
            "ok",
            "en",
        )
    for clip in (0, 1):
        no_speech, untranscribed = items[("vid_b", clip)], items[("vid_c", clip)]
        assert (no_speech["transcript_status"], no_speech["transcript"], no_speech["transcript_segments"]) == (
            "no_speech",
            "",
            [],
        )
        assert (
            untranscribed["transcript_status"],
            untranscribed["transcript"],
            untranscribed["transcript_language"],
            untranscribed["transcript_segments"],
        ) == ("", "", "", [])
    # Off by default.
    assert "transcript" not in LanceClipDataset(table["uri"], sampling=SAMPLING, with_depth=False)[0]


def test_a_version_without_transcript_columns_serves_empty_transcripts(table, caplog):
    with caplog.at_level("WARNING", logger="kinetics_assets.readers.table_clips"):
        ds = LanceClipDataset(
            table["uri"], version=table["before"], sampling=SAMPLING, with_depth=False, with_transcript=True
        )
    assert "has no transcript columns" in caplog.text
    assert "transcript_status" not in lance.dataset(table["uri"], version=ds.version).schema.names
    for i in range(len(ds)):
        item = ds[i]
        assert (item["transcript_status"], item["transcript"], item["transcript_segments"]) == ("", "", [])


def test_batches_keep_segments_as_a_list_per_item(table):
    ds = LanceClipDataset(table["uri"], sampling=SAMPLING, shards=["s1"], with_depth=False, with_transcript=True)
    expected = {(ds[i]["video_id"], ds[i]["clip"]): _texts(ds[i]) for i in range(len(ds))}
    for loader in (clip_loader(ds, batch_size=4), DataLoader(ds, batch_size=4, collate_fn=collate_clips)):
        seen = {}
        for batch in loader:
            assert batch["video"].shape[:2] == (len(batch["video_id"]), 10)
            assert batch["video"].dtype == torch.uint8
            assert isinstance(batch["transcript"], list)
            assert isinstance(batch["transcript_status"], list)
            assert len(batch["transcript_segments"]) == len(batch["video_id"])
            for video_id, clip, segments in zip(
                batch["video_id"], batch["clip"].tolist(), batch["transcript_segments"], strict=True
            ):
                seen[(video_id, clip)] = [s["text"] for s in segments]
        assert seen == expected
    # The segment counts differ (2, 2, 0, ...): the plain default collate cannot batch them.
    with pytest.raises(RuntimeError, match="equal size"):
        next(iter(DataLoader(ds, batch_size=len(ds))))


@pytest.mark.e2e  # a local Ray in the test process
def test_read_clips_with_transcript(ray_local, table):
    rows = read_clips(table["uri"], sampling=SAMPLING, shards=["s1"], with_depth=False, with_transcript=True).take_all()
    by_clip = {(r["video_id"], r["clip"]): r for r in rows}
    assert len(by_clip) == 6
    assert all(r["ok"] for r in rows)
    assert [s["text"] for s in by_clip[("vid_a", 0)]["transcript_segments"]] == [
        "inside the first clip",
        "starts on the first clip's last frame",
    ]
    assert [s["text"] for s in by_clip[("vid_a", 1)]["transcript_segments"]] == [
        "ends just after the second clip's first frame",
        "starts on the second clip's last frame",
    ]
    assert by_clip[("vid_a", 1)]["transcript_segments"][1]["start"] == pytest.approx(
        by_clip[("vid_a", 1)]["timestamps"][-1]
    )
    assert (by_clip[("vid_a", 0)]["transcript"], by_clip[("vid_a", 0)]["transcript_language"]) == (
        "the whole text",
        "en",
    )
    assert by_clip[("vid_b", 0)]["transcript_status"] == "no_speech"
    assert len(by_clip[("vid_b", 0)]["transcript_segments"]) == 0
    assert by_clip[("vid_c", 1)]["transcript_status"] == ""
    assert len(by_clip[("vid_c", 1)]["transcript_segments"]) == 0
    frames = read_clips(
        table["uri"], sampling=SAMPLING, where="video_id = 'vid_a'", with_depth=False, with_transcript=True, per="frame"
    ).take_all()
    assert len(frames) == 20
    assert all(r["transcript"] == "the whole text" for r in frames)
