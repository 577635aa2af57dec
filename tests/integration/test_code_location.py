"""The code location as Dagster's tools load it: light to import (no torch, transformers or Ray until a
step needs them), and `dg launch` over one partition and a partition range, as the README shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tests.harness.http_server import FaultyFileServer
from tests.harness.shards import build_shard
from tests.integration.test_dagster_assets import _env, _manifest

REPO = Path(__file__).resolve().parents[2]
DG = str(Path(sys.executable).parent / "dg")
HEAVY = ("torch", "transformers", "ray", "lance", "duckdb", "aiohttp", "matplotlib")
LOAD = (
    "import kinetics_assets.definitions as d; defs = d.defs(); "
    "print('ASSETS', sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()))"
)


@pytest.mark.e2e
def test_loading_the_code_location_imports_no_engine(tmp_path, dagster_home):
    manifest = _manifest(tmp_path, "http://127.0.0.1:9/part_0.tar.gz", "http://127.0.0.1:9/part_1.tar.gz")
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", LOAD],
        check=False,
        cwd=REPO,
        env=_env(tmp_path, dagster_home, manifest),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "ASSETS ['clip_embeddings', 'clip_fingerprints', 'depth_maps', 'embedding_index', 'frame_stats', "
        "'near_duplicates', 'qa_report', 'raw_archives', 'transcoded_videos', 'transcripts']" in proc.stdout
    )
    imported = {
        m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", proc.stderr, re.MULTILINE)
    }
    assert "dagster" in imported  # the -X importtime report was read
    assert not set(HEAVY) & imported, sorted(set(HEAVY) & imported)


@pytest.fixture(scope="module")
def served_two_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    specs = [build_shard(root, f"part_{i}", n_clips=2, with_defects=False, seed=i) for i in range(2)]
    with FaultyFileServer(root) as server:
        yield server, specs


def _dg_launch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DG, "launch", *args],
        check=False,
        cwd=REPO,
        env={**env, "VIRTUAL_ENV": sys.prefix},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.e2e
def test_dg_launch_one_partition_and_a_partition_range(served_two_shards, tmp_path, dagster_home):
    server, specs = served_two_shards
    manifest = _manifest(tmp_path, *(server.url(s.archive_path.name) for s in specs))
    # In process (no Ray), and every partition of a range in one run, which a range needs.
    env = _env(tmp_path, dagster_home, manifest, KINETICS_EXECUTION="in_process", KINETICS_PARTITIONS_PER_RUN="all")

    one = _dg_launch(env, "--assets", "raw_archives", "--partition", "part_0")
    assert one.returncode == 0, (one.stdout + one.stderr)[-3000:]
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("raw_archives")) == {"part_0"}

    both = _dg_launch(env, "--assets", "raw_archives,transcoded_videos", "--partition-range", "part_0...part_1")
    assert both.returncode == 0, (both.stdout + both.stderr)[-3000:]
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for asset in ("raw_archives", "transcoded_videos"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == {"part_0", "part_1"}, asset
        runs = instance.get_runs()
        assert len(runs) == 2  # the range is one run
        event = instance.get_latest_materialization_event(dg.AssetKey("transcoded_videos"))
        assert event.asset_materialization.metadata["rows_ok"].value == 2
