"""QA over the Lance table: DuckDB views and canned queries on real tables, and the `kinetics qa` /
`kinetics status` commands run as a user runs them (subprocesses, a real Dagster instance)."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import dagster as dg
import lance
import pyarrow as pa
import pytest

from kinetics_assets import qa
from kinetics_assets.ingest.annotations import Annotation
from kinetics_assets.ops import cli
from kinetics_assets.table import (
    add_missing_columns,
    commit_shard,
    ensure_depth_columns,
    ensure_transcript_columns,
    write_columns,
    write_depth,
    write_shard_fragments,
    write_transcripts,
)

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _ok(shard: str, n: int, label: str, *, width: int, height: int, fps: float, duration: float) -> dict:
    payload = bytes([n % 256]) * (1000 + n)
    return {
        "video_id": f"{shard}_clip{n:02d}_000000_000010",
        "shard": shard,
        "status": "ok",
        "label": label,
        "release": "custom",
        "source_width": width,
        "source_height": height,
        "source_fps": fps,
        "source_duration_s": duration,
        "width": 640,
        "height": 360,
        "fps": fps,
        "duration_s": duration,
        "frames": int(duration * fps),
        "bytes": len(payload),
        "video": payload,
        "processed_at": NOW,
    }


def _failed(shard: str, n: int, label: str, error_type: str, message: str) -> dict:
    return {
        "video_id": f"{shard}_clip{n:02d}_000000_000010",
        "shard": shard,
        "status": "failed",
        "label": label,
        "error_type": error_type,
        "error_message": message,
        "source_member": f"{label}/{shard}_clip{n:02d}.mp4",
        "attempts": 1,
        "processed_at": NOW,
    }


SHARD_ROWS = {
    "part_0": [
        _ok("part_0", 0, "abseiling", width=1920, height=1080, fps=29.97, duration=10.0),
        _ok("part_0", 1, "abseiling", width=1280, height=720, fps=30.0, duration=10.0),
        _ok("part_0", 2, "air drumming", width=640, height=360, fps=25.0, duration=9.4),
        _ok("part_0", 3, "air drumming", width=360, height=640, fps=24.0, duration=10.0),  # portrait
        _failed("part_0", 4, "abseiling", "truncated", "moov atom not found"),
        _failed("part_0", 5, "air drumming", "empty", "0-byte file"),
    ],
    "part_1": [
        _ok("part_1", 0, "riding a bike", width=320, height=240, fps=15.0, duration=5.2),
        _ok("part_1", 1, "riding a bike", width=480, height=360, fps=30.0, duration=10.0),
        _ok("part_1", 2, "air drumming", width=1280, height=720, fps=60.0, duration=10.0),
        _failed("part_1", 3, "riding a bike", "truncated", "moov atom not found (second)"),
    ],
}


def _annotations() -> dict[str, Annotation]:
    notes = {}
    for rows in SHARD_ROWS.values():
        for row in rows:
            notes[row["video_id"]] = Annotation(row["label"], row["video_id"][:-14], 0, 10, "val")
    # Two annotated clips no shard has, and a label none of the rows carries.
    notes["gone_clip_000000_000010"] = Annotation("abseiling", "gone", 0, 10, "val")
    notes["lost_clip_000000_000010"] = Annotation("juggling", "lost", 0, 10, "val")
    # An unannotated row (part_1 clip 2) shows up as not_annotated.
    del notes["part_1_clip02_000000_000010"]
    return notes


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """The same two shards without depth columns and with them (some depth ok, one failed)."""
    root = tmp_path_factory.mktemp("qa")
    plain = str(root / "plain.lance")
    versions = {}
    for shard, rows in SHARD_ROWS.items():
        versions[shard] = commit_shard(plain, shard, write_shard_fragments(rows, plain)).version
    with_depth = str(root / "depth.lance")
    shutil.copytree(plain, with_depth)
    ensure_depth_columns(with_depth)
    depth_rows = [
        {
            "video_id": "part_0_clip00_000000_000010",
            "depth": b"d" * 10,
            "depth_status": "ok",
            "depth_frames": 300,
            "depth_model": "tiny",
            "depth_pretrained": True,
        },
        {
            "video_id": "part_0_clip01_000000_000010",
            "depth": b"d" * 10,
            "depth_status": "ok",
            "depth_frames": 300,
            "depth_model": "tiny",
            "depth_pretrained": False,
        },
        {
            "video_id": "part_1_clip00_000000_000010",
            "depth": None,
            "depth_status": "failed",
            "depth_error": "part_1_clip00_000000_000010: RuntimeError: out of memory",
        },
    ]
    write_depth(with_depth, depth_rows)
    return {"root": root, "plain": plain, "depth": with_depth, "versions": versions}


def _rows(table: pa.Table, key: str) -> dict:
    return {r[key]: r for r in table.to_pylist()}


def test_views_leave_payload_columns_out(tables):
    for uri in (tables["plain"], tables["depth"]):
        con = qa.open_qa(uri)
        videos = qa.query(con, "SELECT * FROM videos")
        assert "video" not in videos.column_names
        assert "depth" not in videos.column_names
        assert videos.num_rows == 10
        assert {"video_id", "status", "bytes", "label"} <= set(videos.column_names)
        failures = qa.query(con, "SELECT * FROM failures ORDER BY video_id")
        assert failures.column_names[:5] == ["shard", "video_id", "error_type", "error_message", "source_member"]
        assert failures["error_type"].to_pylist() == ["truncated", "empty", "truncated"]
        depth = qa.query(con, "SELECT * FROM depth")
        assert "depth" not in depth.column_names
        assert {"video_id", "shard", "depth_status", "depth_error", "depth_frames", "depth_pretrained"} <= set(
            depth.column_names
        )
    # Without the depth columns the view exists, typed, and empty.
    assert qa.query(qa.open_qa(tables["plain"]), "SELECT count(*) AS n FROM depth")["n"].to_pylist() == [0]
    depth = qa.query(
        qa.open_qa(tables["depth"]), "SELECT video_id, depth_status FROM depth WHERE depth_status IS NOT NULL"
    )
    assert sorted(depth["depth_status"].to_pylist()) == ["failed", "ok", "ok"]


def test_a_table_with_float16_embeddings_is_still_queried(tables):
    """DuckDB cannot bind Arrow's float16: the table is read without the embedding column, not refused."""
    uri = str(tables["root"] / "embedded.lance")
    shutil.copytree(tables["depth"], uri)
    vectors = pa.array([[0.6, 0.8]] * 10, type=pa.list_(pa.float16(), 2))
    ids = lance.dataset(uri).to_table(columns=["video_id"])["video_id"]
    embedded = pa.table({"video_id": ids, "embedding": vectors, "embedding_status": pa.array(["ok"] * 10)})
    add_missing_columns(uri, None, embedded.schema.remove(0), "the embedding columns")
    write_columns(uri, embedded, "embeddings")
    con = qa.open_qa(uri)
    videos = qa.query(con, "SELECT * FROM videos")
    assert videos.num_rows == 10
    assert "embedding" not in videos.column_names
    assert "video" not in videos.column_names
    assert qa.query(con, "SELECT count(*) AS n FROM videos WHERE embedding_status = 'ok'")["n"].to_pylist() == [10]
    assert set(qa.run_qa(con)) == set(qa.QUERIES)  # every canned query runs
    assert lance.dataset(uri).schema.field("embedding").type == pa.list_(pa.float16(), 2)


def test_canned_queries(tables):
    results = qa.run_qa(qa.open_qa(tables["depth"], annotations=_annotations()))
    assert list(results) == list(qa.QUERIES)
    overview = results["overview"].to_pylist()[0]
    assert (overview["shards"], overview["videos"], overview["ok"], overview["failed"]) == (2, 10, 7, 3)
    assert (overview["depth_ok"], overview["depth_failed"]) == (2, 1)

    shards = _rows(results["shard_counts"], "shard")
    assert (shards["part_0"]["ok"], shards["part_0"]["failed"], shards["part_0"]["failed_pct"]) == (4, 2, 33.3)
    assert (shards["part_1"]["ok"], shards["part_1"]["failed"]) == (3, 1)

    causes = results["failure_causes"].to_pylist()
    assert causes[0] == {
        "error_type": "truncated",
        "videos": 2,
        "shards": 2,
        "example_video": "part_0_clip04_000000_000010",
        "example_message": "moov atom not found",
    }
    assert causes[1]["error_type"] == "empty"
    assert causes[1]["videos"] == 1

    durations = {r["from_s"]: r["videos"] for r in results["duration_histogram"].to_pylist()}
    assert durations == {5: 1, 9: 1, 10: 5}
    resolutions = {r["source_short_side"]: r["videos"] for r in results["resolution_histogram"].to_pylist()}
    # the portrait clip counts by its short side
    assert resolutions == {"240-359 px": 1, "360-479 px": 3, "720-1079 px": 2, ">=1080 px": 1}
    assert results["resolution_histogram"]["source_short_side"].to_pylist()[0] == "240-359 px"  # ordered by size
    fps = {r["source_fps"]: r["videos"] for r in results["fps_histogram"].to_pylist()}
    assert fps == {"15": 1, "24": 1, "25": 1, "29.97": 1, "30": 2, "60": 1}

    labels = _rows(results["label_coverage"], "label")
    assert labels["abseiling"] == {
        "label": "abseiling",
        "expected": 4,
        "present_ok": 2,
        "failed": 1,
        "missing": 1,
        "not_annotated": 0,
    }
    assert labels["juggling"]["expected"] == 1
    assert labels["juggling"]["missing"] == 1
    assert labels["air drumming"]["not_annotated"] == 1
    assert labels["air drumming"]["present_ok"] == 2
    assert labels["riding a bike"]["failed"] == 1

    depth = _rows(results["depth_coverage"], "shard")
    assert depth["part_0"] == {
        "shard": "part_0",
        "ok_videos": 4,
        "depth_ok": 2,
        "depth_failed": 0,
        "depth_missing": 2,
        "random_weights": 1,
    }
    assert (depth["part_1"]["depth_failed"], depth["part_1"]["depth_missing"]) == (1, 2)


def test_bin_labels_say_what_the_clips_are(tmp_path):
    """A bin label must not name a size or rate no clip in it has: 352x288 is not "240p", 12.5 fps is not 13."""
    uri = str(tmp_path / "bins.lance")
    rows = [
        _ok("s", 0, "a", width=352, height=288, fps=12.5, duration=10.0),
        _ok("s", 1, "a", width=576, height=1024, fps=29.5, duration=10.0),  # portrait, odd rate
        _ok("s", 2, "a", width=640, height=480, fps=29.4, duration=10.0),
        _ok("s", 3, "a", width=1280, height=720, fps=30000 / 1001, duration=10.0),
    ]
    commit_shard(uri, "s", write_shard_fragments(rows, uri))
    results = qa.run_qa(qa.open_qa(uri))
    sizes = {
        r["source_short_side"]: (r["videos"], r["most_common_size"])
        for r in results["resolution_histogram"].to_pylist()
    }
    assert sizes == {
        "240-359 px": (1, "352x288"),
        "480-719 px": (2, sizes["480-719 px"][1]),
        "720-1079 px": (1, "1280x720"),
    }
    fps = {r["source_fps"]: (r["videos"], r["min_exact"], r["max_exact"]) for r in results["fps_histogram"].to_pylist()}
    assert fps == {"12.5": (1, 12.5, 12.5), "[29, 30)": (2, 29.4, 29.5), "29.97": (1, 29.97, 29.97)}
    assert results["fps_histogram"]["source_fps"].to_pylist() == ["12.5", "[29, 30)", "29.97"]  # ordered by rate
    report = qa.format_report(results)
    assert "240p" not in report
    assert "13 " not in report


def test_without_annotations_or_depth(tables):
    results = qa.run_qa(qa.open_qa(tables["plain"]))
    labels = _rows(results["label_coverage"], "label")
    assert labels["riding a bike"]["present_ok"] == 2
    assert labels["riding a bike"]["expected"] is None
    assert "juggling" not in labels
    depth = _rows(results["depth_coverage"], "shard")
    assert depth["part_0"]["depth_missing"] == 4
    assert depth["part_0"]["depth_ok"] == 0


def test_pinned_version_sees_the_table_as_it_was(tables):
    con = qa.open_qa(tables["plain"], version=tables["versions"]["part_0"])
    shards = qa.run_qa(con)["shard_counts"]["shard"].to_pylist()
    assert shards == ["part_0"]
    with pytest.raises(qa.QaError, match=r"nowhere\.lance"):
        qa.open_qa(str(tables["root"] / "nowhere.lance"))


def test_format_table_aligns_and_truncates():
    table = pa.table(
        {"name": ["a", "longer name"], "count": [3, 12345], "share": [0.5, 0.123456], "note": [None, "x" * 80]}
    )
    text = qa.format_table(table, max_rows=1)
    lines = text.splitlines()
    assert lines[0].split() == ["name", "count", "share", "note"]
    assert lines[2].split() == ["a", "3", "0.5"]
    assert lines[2].startswith("a    ")
    assert lines[-1] == "... 1 more rows"
    full = qa.format_table(table, max_rows=None, max_width=20)
    assert "12345" in full
    assert "0.123" in full
    assert "x" * 17 + "..." in full
    # Numbers right-aligned under their header.
    header, _, first, second = full.splitlines()
    assert first.index("3") + 1 == second.index("12345") + 5 == header.index("count") + 5
    assert "(no rows)" in qa.format_table(table.slice(0, 0))


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`kinetics ARGS` in this process (the fast tier starts no process), with exactly `env` as the
    environment; its exit status and output as a finished process would give them."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env, clear=True), redirect_stdout(out), redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["kinetics", *args], code or 0, out.getvalue(), err.getvalue())


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINETICS_", "DAGSTER_"))}
    env.update(extra)
    return env


def test_qa_command(tables, tmp_path):
    env = _clean_env(KINETICS_LANCE_URI=tables["depth"], KINETICS_DATA_ROOT=str(tmp_path / "data"))
    csv = tmp_path / "val.csv"
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        + "".join(f"{a.label},{vid[:-14]},0,10,val\n" for vid, a in _annotations().items())
    )
    proc = _run_cli("qa", "--annotations", str(csv), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for name in qa.QUERIES:
        assert f"[{name}]" in out
    assert f"at version {lance.dataset(tables['depth']).version}" in out
    assert "truncated" in out
    assert "moov atom not found" in out
    shard_line = next(line for line in out.splitlines() if line.startswith("part_0 ") and "33.3" in line)
    assert shard_line.split()[:4] == ["part_0", "6", "4", "2"]
    juggling = next(line for line in out.splitlines() if line.startswith("juggling"))
    assert juggling.split() == ["juggling", "1", "0", "0", "1", "0"]

    proc = _run_cli("qa", "--sql", "SELECT shard, count(*) AS n FROM failures GROUP BY shard ORDER BY shard", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line.split() for line in proc.stdout.splitlines()] == [
        ["shard", "n"],
        ["------", "-"],
        ["part_0", "2"],
        ["part_1", "1"],
    ]

    proc = _run_cli("qa", "--sql", "SELECT video FROM videos", env=env)
    assert proc.returncode == 2
    assert "videos, failures, depth" in proc.stderr
    assert "video" in proc.stderr

    proc = _run_cli("qa", "--lance-uri", str(tmp_path / "missing.lance"), env=env)
    assert proc.returncode == 2
    assert "missing.lance" in proc.stderr
    assert "transcoded_videos" in proc.stderr

    old = tables["versions"]["part_0"]
    proc = _run_cli(
        "qa",
        "--lance-uri",
        tables["plain"],
        "--version",
        str(old),
        "--sql",
        "SELECT count(DISTINCT shard) AS shards FROM videos",
        env=env,
    )
    assert proc.returncode == 0
    assert proc.stdout.split()[-1] == "1"


def test_status_command(tables, tmp_path, dagster_home):
    manifest = tmp_path / "manifest.txt"
    # part_0, part_9 and part_5 are partitions; part_1 is in the table only (an older configuration).
    manifest.write_text("".join(f"http://127.0.0.1:9/{p}.tar.gz\n" for p in ("part_0", "part_9", "part_5")))
    partitions = dg.StaticPartitionsDefinition(["part_0", "part_9"])

    @dg.asset(name="transcoded_videos", partitions_def=partitions)
    def stand_in(context) -> None:
        if context.partition_key == "part_9":
            raise RuntimeError("part_9: failed on purpose")

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("raw_archives", partition="part_0"))
        ok_run = dg.materialize([stand_in], partition_key="part_0", instance=instance)
        failed_run = dg.materialize([stand_in], partition_key="part_9", instance=instance, raise_on_error=False)
    assert ok_run.success
    assert not failed_run.success

    env = _clean_env(
        KINETICS_MANIFEST=str(manifest),
        KINETICS_LANCE_URI=tables["depth"],
        KINETICS_DATA_ROOT=str(tmp_path / "data"),
        DAGSTER_HOME=str(dagster_home),
    )
    proc = _run_cli("status", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("3 shards in ")
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[3:]}
    # Columns: shard, downloaded, ok, failed, depth_ok, depth_failed, transcribed, speech, run, status.
    assert lines["part_0"][:10] == ["part_0", "yes", "4", "2", "2", "0", "0", "0", ok_run.run_id[:8], "SUCCESS"]
    assert lines["part_9"][:10] == ["part_9", "no", "0", "0", "0", "0", "0", "0", failed_run.run_id[:8], "FAILURE"]
    assert lines["part_1"][:8] == ["part_1", "no", "3", "1", "0", "1", "0", "0"]
    assert lines["part_5"] == ["part_5", "no", "0", "0", "0", "0", "0", "0"]
    assert "not a partition of the current configuration" in proc.stdout

    # --active: only shards with a download, rows or a run; part_5 has none.
    active = _run_cli("status", "--active", env=env)
    assert active.returncode == 0, active.stderr[-3000:]
    shown = [line.split()[0] for line in active.stdout.splitlines()[3:]]
    assert shown == ["part_0", "part_9", "part_1"]


def _transcript(
    n: str,
    status: str,
    *,
    language: str | None = None,
    probability: float | None = None,
    text: str = "",
    error: str | None = None,
) -> dict:
    segments = [{"start": 0.5, "end": 2.0, "text": text}] if text else []
    return {
        "video_id": f"{n}_000000_000010",
        "transcript_status": status,
        "transcript_text": text,
        "transcript_language": language,
        "transcript_language_probability": probability,
        "transcript_segments": segments,
        "transcript_error": error,
        "transcript_model": "tiny",
        "transcript_pretrained": False,
        "transcript_processed_at": NOW,
    }


@pytest.fixture(scope="module")
def transcribed(tables):
    """The depth table with transcripts for six of its seven ok videos (part_1_clip02 not yet)."""
    uri = str(tables["root"] / "transcripts.lance")
    shutil.copytree(tables["depth"], uri)
    ensure_transcript_columns(uri)
    write_transcripts(
        uri,
        [
            _transcript("part_0_clip00", "ok", language="en", probability=0.9, text="hello there"),  # abseiling
            _transcript("part_0_clip01", "ok", language="en", probability=0.7, text="and | again"),  # abseiling
            _transcript("part_0_clip02", "ok", language="de", probability=0.6, text="guten tag"),  # air drumming
            _transcript("part_0_clip03", "no_speech"),  # air drumming
            _transcript("part_1_clip00", "no_audio"),  # riding a bike
            _transcript("part_1_clip01", "failed", error="RuntimeError: boom"),  # riding a bike
        ],
    )
    return uri


def test_transcripts_view_and_queries(transcribed):
    con = qa.open_qa(transcribed)
    view = qa.query(con, "SELECT * FROM transcripts ORDER BY video_id")
    assert not {"video", "depth"} & set(view.column_names)
    assert {
        "video_id",
        "shard",
        "label",
        "status",
        "transcript_status",
        "transcript_text",
        "transcript_segments",
    } <= set(view.column_names)
    assert view.num_rows == 10
    assert view["transcript_status"].null_count == 4  # 3 failed videos, 1 not yet
    first = qa.query(
        con,
        "SELECT transcript_segments[1].text AS t, transcript_segments[1].start AS s FROM transcripts "
        "WHERE video_id = 'part_0_clip00_000000_000010'",
    ).to_pylist()
    assert first == [{"t": "hello there", "s": 0.5}]

    results = qa.run_qa(con)
    assert [r["transcript_status"] for r in results["transcript_status"].to_pylist()] == [
        "ok",
        "failed",
        "no_audio",
        "no_speech",
    ]
    status = _rows(results["transcript_status"], "transcript_status")
    assert (status["ok"]["clips"], status["ok"]["share"]) == (3, 0.5)
    assert (status["failed"]["clips"], status["failed"]["share"]) == (1, 0.167)
    assert results["transcript_languages"].to_pylist() == [
        {"language": "en", "clips": 2, "share": 0.667, "mean_probability": 0.8},
        {"language": "de", "clips": 1, "share": 0.333, "mean_probability": 0.6},
    ]
    assert results["transcript_labels"].to_pylist() == [
        {"label": "abseiling", "clips": 2, "with_speech": 2, "speech_share": 1.0},
        {"label": "air drumming", "clips": 2, "with_speech": 1, "speech_share": 0.5},
        {"label": "riding a bike", "clips": 2, "with_speech": 0, "speech_share": 0.0},
    ]
    examples = qa.query(con, qa.TRANSCRIPT_EXAMPLES_SQL)
    assert examples["text"].to_pylist() == ["hello there", "and | again", "guten tag"]
    markdown = qa.markdown_table(examples)
    assert markdown.splitlines()[0] == "| video_id | label | language | text |"
    assert "| part_0_clip01_000000_000010 | abseiling | en | and \\| again |" in markdown.splitlines()


def test_without_transcripts_the_queries_say_so(tables):
    con = qa.open_qa(tables["depth"])
    assert qa.query(con, "SELECT count(*) AS n FROM transcripts")["n"].to_pylist() == [0]
    results = qa.run_qa(con)
    for name in qa.TRANSCRIPT_QUERIES:
        assert results[name].num_rows == 0
    report = qa.format_report(results)
    assert report.count("(no transcripts yet") == 2
    assert report.count("(no clip with speech yet)") == 1
    assert report.count("(no rows)") == 0
    assert qa.markdown_table(results["transcript_labels"], empty=qa.EMPTY_NOTES["transcript_labels"]).startswith(
        "_no transcripts yet"
    )


def test_qa_prints_the_transcript_queries(transcribed, capsys):
    from kinetics_assets.ops.cli import print_qa

    assert print_qa(transcribed) == 0
    out = capsys.readouterr().out
    for name in qa.TRANSCRIPT_QUERIES:
        assert f"[{name}]" in out
    assert "no transcripts yet" not in out
    assert "no clip with speech" not in out
    en = next(line for line in out.splitlines() if line.startswith("en "))
    assert en.split() == ["en", "2", "0.667", "0.8"]
    assert print_qa(transcribed, sql="SELECT count(*) AS speech FROM transcripts WHERE transcript_status = 'ok'") == 0
    assert capsys.readouterr().out.split()[-1] == "3"
