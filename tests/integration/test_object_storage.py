"""Archives and the Lance table on S3-compatible storage: a real S3 server (moto's server mode) on
loopback (the session's `s3_server`), and a shard taken end to end through Dagster against it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import boto3  # from moto[server], a test dependency
import lance
import pytest

from kinetics_assets.ingest import object_store
from tests.harness.http_server import FaultyFileServer
from tests.harness.shards import build_shard

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

ACCESS_KEY = "kinetics-test-key"
# A value that must never show up in metadata, logs or output.
SECRET = "s3cr3t-" + uuid.uuid4().hex


def _client(endpoint: str):
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET, region_name="us-east-1"
    )


@pytest.fixture
def bucket(s3_server) -> str:
    name = f"kinetics-{uuid.uuid4().hex[:12]}"
    _client(s3_server).create_bucket(Bucket=name)
    return name


def _options(endpoint: str) -> dict[str, str]:
    return {
        "aws_endpoint": endpoint,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET,
        "aws_region": "us-east-1",
        "allow_http": "true",
    }


def _keys(endpoint: str, bucket: str) -> set[str]:
    pages = _client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def test_object_store_round_trip(s3_server, bucket, tmp_path):
    options = _options(s3_server)
    local = tmp_path / "blob.bin"
    payload = os.urandom(3 * 1024 * 1024 + 17)
    local.write_bytes(payload)
    uri = f"s3://{bucket}/a/b/blob.bin"

    assert object_store.is_remote(uri)
    assert not object_store.is_remote(str(tmp_path))
    assert object_store.size(uri, options) is None
    assert not object_store.exists(uri, options)
    assert object_store.upload_file(local, uri, options) == len(payload)
    assert object_store.size(uri, options) == len(payload)
    back = object_store.download_file(uri, tmp_path / "back" / "blob.bin", options)
    assert back.read_bytes() == payload
    assert not (tmp_path / "back" / "blob.bin.part").exists()

    object_store.write_json(f"s3://{bucket}/a/meta.json", {"bytes": 3}, options)
    assert object_store.read_json(f"s3://{bucket}/a/meta.json", options) == {"bytes": 3}
    assert object_store.read_json(f"s3://{bucket}/a/none.json", options) is None
    files = object_store.download_tree(f"s3://{bucket}/a", tmp_path / "tree", options)
    assert sorted(p.relative_to(tmp_path / "tree").as_posix() for p in files) == ["b/blob.bin", "meta.json"]
    object_store.remove(uri, options)
    object_store.remove(uri, options)  # a missing object is fine
    assert not object_store.exists(uri, options)

    # What may be logged names where the store is, never a key.
    assert s3_server in object_store.describe(options)
    assert SECRET not in object_store.describe(options)
    with pytest.raises(object_store.ObjectStoreError, match=r"gs://x/y.*unsupported storage scheme 'gs'"):
        object_store.is_remote("gs://x/y")


def test_object_store_errors_name_the_uri_not_the_secret(s3_server, tmp_path):
    options = _options(s3_server)
    local = tmp_path / "x.bin"
    local.write_bytes(b"x")
    with pytest.raises(object_store.ObjectStoreError) as failure:
        object_store.upload_file(local, "s3://no-such-bucket-here/x.bin", options)
    assert "s3://no-such-bucket-here/x.bin" in str(failure.value)
    assert SECRET not in str(failure.value)


def test_video_list_shard_on_object_storage(s3_server, bucket, tmp_path):
    """A video-list shard (loose videos) goes to `<data_root>/raw/<key>/`; a failed video is recorded
    and retried on the next run; complete shards are not fetched again; staging is cleaned up."""
    from kinetics_assets.ingest.download import DownloadConfig
    from kinetics_assets.ingest.shards import Shard
    from kinetics_assets.steps.failures import UpstreamMissing
    from kinetics_assets.steps.raw import fetch_shard, local_source
    from tests.harness.shards import build_video_list

    options, data_root, cache = _options(s3_server), f"s3://{bucket}/data", tmp_path / "cache"
    with FaultyFileServer(tmp_path / "served") as server:
        spec = build_video_list(tmp_path / "served", "my_list", n_clips=2, base_url=server.base_url.rstrip("/"))
        missing = server.url("my_list/late_000001_000011.mp4")
        shard = Shard("my_list", "videos", (*spec.entries, missing), "custom", "my_list")
        with (
            pytest.raises(UpstreamMissing, match=r"my_list.*s3://.*raw_archives"),
            local_source(shard, data_root, storage_options=options, cache_dir=cache),
        ):
            pass

        first = fetch_shard(shard, data_root, DownloadConfig(max_attempts=1), storage_options=options, cache_dir=cache)
        assert first.location == f"{data_root}/raw/my_list"
        assert [f.url for f in first.failed] == [missing]
        stored = {k.rsplit("/", 1)[-1] for k in _keys(s3_server, bucket) if k.startswith("data/raw/my_list/")}
        names = [p.name for p in spec.clip_paths]
        assert stored == {"failed_downloads.json", *names, *(n + ".verified.json" for n in names)}

        # The late video appears; the next run fetches only it and completes the shard.
        (tmp_path / "served" / "my_list" / "late_000001_000011.mp4").write_bytes(spec.clip_paths[0].read_bytes())
        server.clear_requests()
        second = fetch_shard(shard, data_root, DownloadConfig(max_attempts=1), storage_options=options, cache_dir=cache)
        assert second.failed == []
        assert len(second.index.video_members) == 3
        assert {r.path for r in server.requests if r.method == "GET"} == {"my_list/late_000001_000011.mp4"}
        assert not (cache / "raw" / "my_list").exists()

        server.clear_requests()
        third = fetch_shard(shard, data_root, DownloadConfig(max_attempts=1), storage_options=options, cache_dir=cache)
        assert all(d.skipped for d in third.downloads)
        assert server.requests == []
        assert {d.sha256 for d in third.downloads} == {d.sha256 for d in second.downloads}

    with local_source(shard, data_root, storage_options=options, cache_dir=cache) as folder:
        assert sorted(p.name for p in folder.glob("*.mp4")) == sorted([*names, "late_000001_000011.mp4"])
        assert json.loads((folder / "failed_downloads.json").read_text()) == []
        staged = folder
    assert not staged.exists()


# The driver script runs in its own process: partitions and resources are read from the environment
# when the code location's definitions are built. One Ray for both runs (the resource reuses it).
_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import dagster as dg
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=512 * 1024 * 1024, namespace="kinetics")
    from kinetics_assets.definitions import defs
    DEFS = defs()
    ASSETS, RESOURCES = list(DEFS.assets), DEFS.resources

    instance = dg.DagsterInstance.get()
    report = []
    started = time.monotonic()
    for selection in (["raw_archives", "transcoded_videos", "depth_maps"], ["raw_archives", "transcoded_videos"]):
        # Three of the shard's five clips are defective on purpose: let the failure-rate check pass.
        run_config = {"ops": {"transcoded_videos": {"config": {"max_failure_rate": 1.0}}}}
        assets = [a for a in ASSETS if a.key.to_user_string() in selection]
        result = dg.materialize(assets, instance=instance, resources=RESOURCES, partition_key="part_0",
                                run_config=run_config)
        metadata = {}
        for event in result.get_asset_materialization_events():
            mat = event.step_materialization_data.materialization
            metadata[mat.asset_key.path[-1]] = {k: v.value for k, v in mat.metadata.items()
                                                if isinstance(v.value, (str, int, float, bool, type(None)))}
        checks = sorted((e.asset_key.path[-1], e.check_name, e.passed) for e in result.get_asset_check_evaluations())
        report.append({"run_id": result.run_id, "success": result.success, "metadata": metadata, "checks": checks,
                       "seconds": round(time.monotonic() - started, 1)})
    print("REPORT " + json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.harness.tiny_depth import save_tiny_depth_model

    return save_tiny_depth_model(tmp_path_factory.mktemp("model") / "tiny")


def test_shard_end_to_end_on_object_storage(s3_server, bucket, tmp_path, dagster_home, tiny_model):
    served = tmp_path / "served"
    spec = build_shard(served, "part_0", n_clips=2, layout="flat")
    manifest = tmp_path / "manifest.txt"
    lance_uri = f"s3://{bucket}/lance/videos.lance"
    options = _options(s3_server)
    cache = tmp_path / "cache"
    with FaultyFileServer(served) as server:
        manifest.write_text(server.url(spec.archive_path.name) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KINETICS_", "DAGSTER_", "AWS_"))}
        env.update(
            DAGSTER_HOME=str(dagster_home),
            KINETICS_MANIFEST=str(manifest),
            KINETICS_DATA_ROOT=f"s3://{bucket}/data",
            KINETICS_LANCE_URI=lance_uri,
            KINETICS_STORAGE_OPTIONS=json.dumps(options),
            KINETICS_CACHE_DIR=str(cache),
            KINETICS_DEPTH_MODEL_PATH=str(tiny_model),
            KINETICS_RAY_NUM_CPUS="2",
            RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
            HF_HUB_OFFLINE="1",
        )
        proc = subprocess.run(
            [sys.executable, "-c", _SCRIPT], cwd=REPO, env=env, check=False, capture_output=True, text=True, timeout=300
        )
        archive_gets = [r for r in server.requests_for(spec.archive_path.name) if r.method == "GET"]
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    first, second = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert first["success"]
    assert second["success"]
    print(f"runs finished at {first['seconds']} s and {second['seconds']} s after Ray started")  # noqa: T201 - the timing, for whoever runs it with -s
    assert all(passed for _, _, passed in first["checks"]), first["checks"]

    # The archive and its sidecars are in the bucket, byte for byte, and nothing is left staged locally.
    keys = _keys(s3_server, bucket)
    archive_key = "data/raw/part_0.tar.gz"
    assert {archive_key, archive_key + ".verified.json", archive_key + ".index.json"} <= keys
    stored = _client(s3_server).get_object(Bucket=bucket, Key=archive_key)["Body"].read()
    assert stored == spec.archive_path.read_bytes()
    sha = hashlib.sha256(stored).hexdigest()
    assert first["metadata"]["raw_archives"]["sha256"] == sha
    assert first["metadata"]["raw_archives"]["path"] == f"s3://{bucket}/data/{archive_key[5:]}"
    assert first["metadata"]["transcoded_videos"]["upstream_sha256"] == sha
    assert any(k.startswith("lance/videos.lance/_versions/") for k in keys)
    assert any(k.startswith("lance/videos.lance/data/") for k in keys)
    assert [p for p in cache.rglob("*") if p.is_file()] == []

    # The re-run found the verified archive in the bucket and fetched nothing.
    assert len(archive_gets) == 1
    assert second["metadata"]["raw_archives"]["skipped_verified_copy"] is True
    assert second["metadata"]["raw_archives"]["attempts"] == 0

    # The table reads back from S3: one row per member after two runs, depth from the first run's
    # table version, the shard replaced (not duplicated) by the second.
    table = lance.dataset(lance_uri, storage_options=options).to_table(columns=["video_id", "status"])
    ids = table["video_id"].to_pylist()
    assert sorted(ids) == sorted(spec.video_ids)
    assert len(ids) == len(set(ids))
    ok = {i for i, s in zip(ids, table["status"].to_pylist(), strict=True) if s == "ok"}
    assert ok == set(spec.good_ids)
    depth_version = first["metadata"]["depth_maps"]["lance_version"]
    depth = lance.dataset(lance_uri, storage_options=options, version=depth_version).to_table(
        columns=["video_id", "depth_status"], filter="status = 'ok'"
    )
    assert depth["depth_status"].to_pylist() == ["ok"] * len(spec.good_ids)

    _assert_no_credential_kept(output, dagster_home, [first["run_id"], second["run_id"]])


def _assert_no_credential_kept(output: str, dagster_home: Path, run_ids: list[str]) -> None:
    """No credential anywhere Dagster keeps or shows things, nor in what the process printed."""
    import dagster as dg
    from dagster._serdes import serialize_value

    assert SECRET not in output
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run_id in run_ids:
            records = instance.all_logs(run_id)
            assert records, "the run left no event log"
            for record in records:
                assert SECRET not in serialize_value(record)
            assert SECRET not in serialize_value(instance.get_run_by_id(run_id))
    # Nor in any file the instance wrote (run and event storage, compute logs).
    stored_files = [p for p in dagster_home.rglob("*") if p.is_file()]
    assert stored_files
    assert not [p for p in stored_files if SECRET.encode() in p.read_bytes()]
