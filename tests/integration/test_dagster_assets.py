"""The assets through Dagster itself: the CLI users run, the Python API, and the demo command. The
Python API and the download failures run in the test process (fast tier); the CLI and the demo start
processes (e2e)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import lance
import pytest

from kinetics_assets import definitions
from tests.harness.http_server import FaultyFileServer
from tests.harness.shards import build_shard

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")


@pytest.fixture(scope="module")
def served_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    spec = build_shard(root, "part_0", n_clips=3, layout="flat")
    with FaultyFileServer(root) as server:
        yield server, spec


def _env(tmp_path: Path, dagster_home: Path, manifest: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINETICS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        KINETICS_MANIFEST=str(manifest),
        KINETICS_DATA_ROOT=str(tmp_path / "data"),
        RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
        **extra,
    )
    return env


def _manifest(tmp_path: Path, *urls: str) -> Path:
    path = tmp_path / "manifest.txt"
    path.write_text("\n".join(urls) + "\n")
    return path


def _materialize_cli(env: dict[str, str], select: str, partition: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "kinetics_assets.definitions",
            "--select",
            select,
            "--partition",
            partition,
            *extra,
        ],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _latest(home: Path, asset: str, partition: str):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None, f"no materialization of {asset}"
        mat = event.asset_materialization
        assert mat.partition == partition
        return mat, {}


def _use_env(monkeypatch, env: dict[str, str]) -> None:
    """`env`'s Dagster and project settings as this process's environment, which the code location
    is built from."""
    for name in [k for k in os.environ if k.startswith(("KINETICS_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(("KINETICS_", "DAGSTER_")):
            monkeypatch.setenv(name, value)


@pytest.mark.e2e
def test_raw_archives_through_the_dagster_cli(served_shards, tmp_path, dagster_home):
    server, spec = served_shards
    env = _env(tmp_path, dagster_home, _manifest(tmp_path, server.url(spec.archive_path.name)))
    proc = _materialize_cli(env, "raw_archives", "part_0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    mat, _ = _latest(dagster_home, "raw_archives", "part_0")
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["sha256"] == hashlib.sha256(spec.archive_path.read_bytes()).hexdigest()
    assert meta["video_members"] == len(spec.video_members)
    assert meta["junk_skipped"] == len(spec.junk_members)
    assert (tmp_path / "data" / "raw" / "part_0.tar.gz").read_bytes() == spec.archive_path.read_bytes()


def test_raw_archives_through_the_python_api(served_shards, tmp_path, dagster_home, monkeypatch):
    server, spec = served_shards
    _use_env(monkeypatch, _env(tmp_path, dagster_home, _manifest(tmp_path, server.url(spec.archive_path.name))))
    job = definitions.defs().resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance, partition_key="part_0", asset_selection=[dg.AssetKey("raw_archives")]
        )
    assert result.success
    checks = {(e.check_name, e.passed) for e in result.get_asset_check_evaluations()}
    assert {("archive_verified", True), ("has_video_members", True)} <= checks, checks
    mat, _ = _latest(dagster_home, "raw_archives", "part_0")
    assert mat.metadata["bytes"].value == spec.archive_path.stat().st_size


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("MISSING", r"404"),
        ("http://127.0.0.1:9/part_0.tar.gz", r"127\.0\.0\.1:9"),
    ],
)
def test_download_failures_name_the_shard_and_url(served_shards, tmp_path, dagster_home, monkeypatch, *, url, expected):
    server, _ = served_shards
    if url == "MISSING":
        url = server.url("part_0.tar.gz").replace("part_0", "nope/part_0")
    _use_env(monkeypatch, _env(tmp_path, dagster_home, _manifest(tmp_path, url)))
    quick = {"ops": {"raw_archives": {"config": {"max_attempts": 2, "connect_timeout_s": 2}}}}
    job = definitions.defs().resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            partition_key="part_0",
            asset_selection=[dg.AssetKey("raw_archives")],
            run_config=quick,
            raise_on_error=False,
        )
    assert not result.success
    output = "\n".join(e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure)
    assert "part_0" in output
    assert url in output
    assert re.search(expected, output)


@pytest.mark.e2e
def test_unknown_partition_key_is_refused(served_shards, tmp_path, dagster_home):
    server, spec = served_shards
    env = _env(tmp_path, dagster_home, _manifest(tmp_path, server.url(spec.archive_path.name)))
    proc = _materialize_cli(env, "raw_archives", "part_99")
    assert proc.returncode != 0
    assert "part_99" in proc.stdout + proc.stderr


@pytest.mark.e2e
def test_demo_command_materializes_the_sample_shard(tmp_path, dagster_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINETICS_", "DAGSTER_"))}
    # Offline: the depth weights cannot be had here, so the demo must fall back, loudly.
    env.update(
        DAGSTER_HOME=str(dagster_home), KINETICS_RAY_NUM_CPUS="2", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", HF_HUB_OFFLINE="1"
    )
    kinetics = str(Path(sys.executable).parent / "kinetics")
    proc = subprocess.run(
        [kinetics, "demo", "--data-root", str(tmp_path / "data")],
        cwd=REPO,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "check transcoded_videos.failure_rate: passed" in proc.stdout
    table = lance.dataset(str(tmp_path / "data" / "lance" / "custom.lance")).to_table(columns=["status", "error_type"])
    statuses = table["status"].to_pylist()
    assert statuses.count("ok") == 6
    assert statuses.count("failed") == 1
    assert "truncated" in table["error_type"].to_pylist()
    mat, _ = _latest(dagster_home, "transcoded_videos", "sample_val_001")
    assert mat.metadata["rows_ok"].value == 6
    # Depth ran for every ok clip, and the random stand-in model is on the record, not silent.
    assert "check depth_maps.every_ok_video_has_depth: passed" in proc.stdout
    assert "RANDOMLY INITIALISED" in proc.stdout
    depth = lance.dataset(str(tmp_path / "data" / "lance" / "custom.lance")).to_table(
        columns=["depth_status", "depth_pretrained"], filter="status = 'ok'"
    )
    assert depth["depth_status"].to_pylist() == ["ok"] * 6
    assert depth["depth_pretrained"].to_pylist() == [False] * 6
    mat, _ = _latest(dagster_home, "depth_maps", "sample_val_001")
    assert mat.metadata["pretrained_weights"].value is False
    assert "data:image/png;base64," in mat.metadata["preview"].value
    # Transcripts ran with the tiny random Whisper, said so, and the summary shows both silent statuses.
    assert "check transcripts.every_ok_video_has_transcript_status: passed" in proc.stdout
    assert "RANDOMLY INITIALISED stand-in Whisper" in proc.stdout
    assert "Transcripts [sample_val_001]: 6 clips (ok 0, no_audio 4, no_speech 2, failed 0)" in proc.stdout
    speech = lance.dataset(str(tmp_path / "data" / "lance" / "custom.lance")).to_table(
        columns=["transcript_status", "transcript_pretrained"], filter="status = 'ok'"
    )
    assert sorted(speech["transcript_status"].to_pylist()) == ["no_audio"] * 4 + ["no_speech"] * 2
    assert speech["transcript_pretrained"].to_pylist() == [False] * 6
    mat, _ = _latest(dagster_home, "transcripts", "sample_val_001")
    assert mat.metadata["pretrained_weights"].value is False
    # One embedding per ok clip from the random stand-in SigLIP, on the record and on the screen.
    assert "check clip_embeddings.every_ok_video_has_embedding: passed" in proc.stdout
    assert "RANDOMLY INITIALISED stand-in SigLIP" in proc.stdout
    embeddings = lance.dataset(str(tmp_path / "data" / "lance" / "custom.lance")).to_table(
        columns=["embedding_status", "embedding_pretrained", "embedding"], filter="status = 'ok'"
    )
    assert embeddings["embedding_status"].to_pylist() == ["ok"] * 6
    assert embeddings["embedding_pretrained"].to_pylist() == [False] * 6
    assert all(len(v) == len(embeddings["embedding"][0]) > 0 for v in embeddings["embedding"].to_pylist())
    # The table assets ran on their own after the shard, and the demo ends with the QA summary.
    assert "check qa_report.video_id_unique: passed" in proc.stdout
    assert "check embedding_index.index_commit_kept_rows: passed" in proc.stdout
    mat, _ = _latest(dagster_home, "embedding_index", None)
    assert mat.metadata["action"].value == "below_minimum"  # six rows: searched exactly, no index yet
    assert mat.metadata["embedded_rows"].value == 6
    # Every ok clip fingerprinted and compared; the random stand-in's vectors add no pairs, and say so.
    assert "check clip_fingerprints.every_ok_video_has_fingerprint: passed" in proc.stdout
    assert "check near_duplicates.fingerprinted_ok_videos: passed" in proc.stdout
    mat, _ = _latest(dagster_home, "near_duplicates", None)
    assert mat.metadata["pairs_by_embedding"].value == 0
    assert "RANDOM weights" in mat.metadata["embedding_pairs_skipped"].value
    summary = proc.stdout[proc.stdout.index("QA summary") :]
    assert "[depth_coverage]" in summary
    shard_line = next(line for line in summary.splitlines() if line.startswith("sample_val_001") and "14.3" in line)
    assert shard_line.split()[:4] == ["sample_val_001", "7", "6", "1"]
