"""Many partitions in one run: every shard recorded for its own partition, failures kept per shard,
re-launches that redo only what failed, and the range CLI.

The runs go through Dagster's own execution in this process (`execute_in_process` over a partition
range, as a run worker executes one) on the code location built from the environment, with the steps'
per-clip work in process (KINETICS_EXECUTION=in_process): what is under test is how a run of several
partitions records, fails and re-launches them, not Ray, which test_ui_backfill.py's runs of two
partitions each and tests/integration/test_ray_*.py cover. Only the range CLI starts a process (e2e).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import lance
import pytest

from kinetics_assets import definitions
from tests.harness.http_server import FaultyFileServer
from tests.harness.shards import build_shard
from tests.harness.tiny_depth import save_tiny_depth_model

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")
ASSETS = ["raw_archives", "transcoded_videos", "depth_maps"]

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """Four K700-style shards served on loopback: part_0 and part_2 good, part_1 mostly defective
    (its failure rate fails the blocking check), part_3 not served until a test puts it there."""
    root = tmp_path_factory.mktemp("split")
    served = root / "served"
    build_shard(served, "part_0", n_clips=2, with_defects=False, seed=0, layout="class_folders")
    build_shard(served, "part_1", n_clips=1, with_defects=True, seed=1, layout="class_folders")
    build_shard(served, "part_2", n_clips=2, with_defects=False, seed=2, layout="class_folders")
    held_back = root / "held_back"
    build_shard(held_back, "part_3", n_clips=2, with_defects=False, seed=3, layout="class_folders")
    model = save_tiny_depth_model(root / "tiny_depth_model")
    with FaultyFileServer(served) as server:
        manifest = root / "manifest.txt"
        manifest.write_text("".join(server.url(f"part_{i}.tar.gz") + "\n" for i in range(4)))
        yield {"root": root, "served": served, "held_back": held_back, "manifest": manifest, "model": model}


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    return home


@pytest.fixture
def home(split, tmp_path, monkeypatch) -> Path:
    """A fresh instance, and the environment the code location is built from: the split, a fresh data
    root, the tiny depth model, the steps' work in process."""
    for name in [k for k in os.environ if k.startswith(("KINETICS_", "DAGSTER_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KINETICS_MANIFEST", str(split["manifest"]))
    monkeypatch.setenv("KINETICS_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("KINETICS_DEPTH_MODEL_PATH", str(split["model"]))
    monkeypatch.setenv("KINETICS_EXECUTION", "in_process")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return _home(tmp_path)


def _run_range(home: Path, select: list[str], first: str, last: str, config: dict | None = None) -> dict:
    """One run over the partition range `first`...`last`, executed the way a run worker executes it."""
    job = definitions.defs().resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = job.execute_in_process(
            instance=instance,
            run_config=config or {},
            raise_on_error=False,
            asset_selection=[dg.AssetKey(name) for name in select],
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        )
    failures = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
    return {"success": result.success, "run_id": result.run_id, "failures": failures}


def _materializations(home: Path, asset: str) -> dict[str, list[dg.AssetMaterialization]]:
    """Every materialization of `asset`, by partition, oldest first."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000, ascending=True).records
    by_partition: dict[str, list] = {}
    for record in records:
        by_partition.setdefault(record.partition_key, []).append(record.asset_materialization)
    return by_partition


def _check_results(home: Path, asset: str, check: str) -> dict[str, list[bool]]:
    """Results of one check, by partition, oldest first."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(asset), check), limit=1000
        )
    by_partition: dict[str, list[bool]] = {}
    for record in reversed(records):
        evaluation = record.event.dagster_event.event_specific_data if record.event else None
        if evaluation is not None and hasattr(evaluation, "passed"):
            by_partition.setdefault(evaluation.partition, []).append(evaluation.passed)
    return by_partition


def _meta(materialization: dg.AssetMaterialization) -> dict:
    return {k: v.value for k, v in materialization.metadata.items()}


def test_one_run_records_every_partition_of_every_asset(home, tmp_path):
    from kinetics_assets.steps.checks import DEPTH_CHECKS, RAW_CHECKS, TRANSCODE_CHECKS

    result = _run_range(home, ASSETS, "part_0", "part_0")  # warm the table
    assert result["success"], result
    result = _run_range(home, ASSETS, "part_0", "part_2")
    # part_1's failure rate fails its blocking check: the step names it, and only it.
    assert not result["success"]
    assert any("part_1" in f and "failure_rate" in f for f in result["failures"]), result["failures"]
    assert not any("part_0" in f or "part_2" in f for f in result["failures"]), result["failures"]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
    assert len(runs) == 2
    raw = _materializations(home, "raw_archives")
    transcoded = _materializations(home, "transcoded_videos")
    assert set(raw) == set(transcoded) == {"part_0", "part_1", "part_2"}
    # Each partition's own metadata: its own rows and its own table version.
    assert _meta(transcoded["part_2"][-1])["rows_ok"] == 2
    assert _meta(transcoded["part_1"][-1])["rows_failed"] == 3
    assert _meta(transcoded["part_0"][-1])["mode"] == "unchanged"  # committed by the first run
    versions = {key: _meta(m[-1])["lance_version"] for key, m in transcoded.items()}
    assert versions["part_1"] != versions["part_2"]
    assert {key: _meta(m[-1])["video_members"] for key, m in raw.items()} == {"part_0": 2, "part_1": 4, "part_2": 2}
    for asset, checks in (("raw_archives", RAW_CHECKS), ("transcoded_videos", TRANSCODE_CHECKS)):
        for check in checks:
            results = _check_results(home, asset, check.name)
            assert {"part_0", "part_1", "part_2"} <= set(results), (check.name, results)
            if check.name != "failure_rate":
                assert all(results[key][-1] for key in ("part_0", "part_1", "part_2")), (check.name, results)
    assert _check_results(home, "transcoded_videos", "failure_rate")["part_1"][-1] is False
    # depth_maps ran only in the first run: the failed blocking check skipped it in the second.
    assert set(_materializations(home, "depth_maps")) == {"part_0"}
    for check in DEPTH_CHECKS:
        assert _check_results(home, "depth_maps", check.name)["part_0"] == [True]

    table = (
        lance.dataset(str(tmp_path / "data" / "lance" / "custom.lance"))
        .to_table(columns=["video_id", "shard", "status"])
        .to_pylist()
    )
    assert sorted({r["shard"] for r in table}) == ["part_0", "part_1", "part_2"]
    assert len(table) == len({r["video_id"] for r in table}) == 2 + 4 + 2


def test_a_failed_shard_keeps_the_others_and_a_relaunch_redoes_only_it(split, home, tmp_path):
    relaxed = {"ops": {"transcoded_videos": {"config": {"max_failure_rate": 1.0}}}}
    # part_3 is not served yet: its download fails, the three others are recorded.
    result = _run_range(
        home, ["raw_archives"], "part_0", "part_3", {"ops": {"raw_archives": {"config": {"max_attempts": 1}}}}
    )
    assert not result["success"]
    (failure,) = result["failures"]
    assert "1 of 4 partition(s) failed" in failure
    assert "part_3" in failure
    assert not any(f"- part_{i}:" in failure for i in range(3)), failure
    assert set(_materializations(home, "raw_archives")) == {"part_0", "part_1", "part_2"}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        status = instance.get_materialized_partitions(dg.AssetKey("raw_archives"))
    assert status == {"part_0", "part_1", "part_2"}

    # transcoded_videos over the range: part_3 has no download, the others land.
    result = _run_range(home, ["transcoded_videos"], "part_0", "part_3", relaxed)
    assert not result["success"]
    (failure,) = result["failures"]
    assert "part_3" in failure, failure
    assert "raw_archives" in failure, failure
    assert "1 of 4" in failure, failure
    first = {key: _meta(m[-1]) for key, m in _materializations(home, "transcoded_videos").items()}
    assert set(first) == {"part_0", "part_1", "part_2"}
    assert {m["mode"] for m in first.values()} == {"full"}

    # Re-launch after the archive appears: only part_3 is downloaded and transcoded.
    (split["served"] / "part_3.tar.gz").write_bytes((split["held_back"] / "part_3.tar.gz").read_bytes())
    result = _run_range(home, ["raw_archives", "transcoded_videos"], "part_0", "part_3", relaxed)
    assert result["success"], result
    raw = {key: _meta(m[-1]) for key, m in _materializations(home, "raw_archives").items()}
    assert [raw[f"part_{i}"]["skipped_verified_copy"] for i in range(4)] == [True, True, True, False]
    second = {key: _meta(m[-1]) for key, m in _materializations(home, "transcoded_videos").items()}
    for key in ("part_0", "part_1", "part_2"):
        assert second[key]["mode"] == "unchanged", second[key]
        assert second[key]["clips_processed"] == 0, second[key]
        assert second[key]["lance_version"] >= first[key]["lance_version"]
    assert second["part_3"]["mode"] == "full"
    assert second["part_3"]["clips_processed"] == 2
    table = lance.dataset(str(tmp_path / "data" / "lance" / "custom.lance")).to_table(columns=["video_id", "shard"])
    assert table.num_rows == len(set(table["video_id"].to_pylist())) == 2 + 4 + 2 + 2
    # `kinetics status` finds each shard's newest run, a range run included.
    from kinetics_assets.ops.status import latest_runs, run_partitions

    keys = [f"part_{i}" for i in range(4)]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        latest = latest_runs(instance, keys)
        assert {key: record.dagster_run.run_id for key, record in latest.items()} == dict.fromkeys(
            keys, result["run_id"]
        )
        assert run_partitions(instance.get_run_by_id(result["run_id"]), keys) == keys
    # force: the settings did not change, but the shard is transcoded again all the same.
    forced = {"ops": {"transcoded_videos": {"config": {"max_failure_rate": 1.0, "force": True}}}}
    result = _run_range(home, ["transcoded_videos"], "part_0", "part_0", forced)
    assert result["success"], result
    assert _meta(_materializations(home, "transcoded_videos")["part_0"][-1])["mode"] == "full"


@pytest.mark.e2e
def test_the_range_cli_runs_one_run_with_the_single_run_policy(split, tmp_path):
    home = _home(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINETICS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home), KINETICS_MANIFEST=str(split["manifest"]), KINETICS_DATA_ROOT=str(tmp_path / "data")
    )
    command = [
        DAGSTER,
        "asset",
        "materialize",
        "-m",
        "kinetics_assets.definitions",
        "--select",
        "raw_archives",
        "--partition-range",
        "part_0...part_2",
    ]
    # Dagster's CLI takes ranges only for assets with the single-run policy: the default refuses, clearly.
    refused = subprocess.run(command, cwd=REPO, env=env, check=False, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0
    assert "single_run" in refused.stdout + refused.stderr
    proc = subprocess.run(
        command,
        cwd=REPO,
        env={**env, "KINETICS_PARTITIONS_PER_RUN": "all"},
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_runs()) == 1
        assert instance.get_materialized_partitions(dg.AssetKey("raw_archives")) == {"part_0", "part_1", "part_2"}


def test_partitions_per_run_come_from_the_environment(monkeypatch):
    from kinetics_assets.settings import Settings, SettingsError

    assert Settings.from_env({}).partitions_per_run == 16
    assert Settings.from_env({"KINETICS_PARTITIONS_PER_RUN": "3"}).partitions_per_run == 3
    assert Settings.from_env({"KINETICS_PARTITIONS_PER_RUN": "all"}).partitions_per_run is None
    for bad in ("0", "zero", "-2"):
        with pytest.raises(SettingsError, match=f"KINETICS_PARTITIONS_PER_RUN='{bad}'"):
            Settings.from_env({"KINETICS_PARTITIONS_PER_RUN": bad})
    with pytest.raises(SettingsError, match="KINETICS_RUN_EXECUTOR='threads'"):
        Settings.from_env({"KINETICS_RUN_EXECUTOR": "threads"})
    # The code location, built as Dagster builds it, turns the setting into the assets' backfill policy.
    for name in [k for k in os.environ if k.startswith("KINETICS_")]:
        monkeypatch.delenv(name)
    built = {}
    for per_run, executor in (("3", "multiprocess"), ("all", "")):
        monkeypatch.setenv("KINETICS_PARTITIONS_PER_RUN", per_run)
        monkeypatch.setenv("KINETICS_RUN_EXECUTOR", executor)
        defs = definitions.defs()
        policy = defs.resolve_assets_def("transcoded_videos").backfill_policy
        built[per_run] = (policy.policy_type.value, policy.max_partitions_per_run, defs.executor.name)
    assert built == {"3": ("MULTI_RUN", 3, "multiprocess"), "all": ("SINGLE_RUN", None, "in_process")}
