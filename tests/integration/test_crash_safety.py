"""A run killed with SIGKILL in the middle of transcoding, then in the middle of depth, must leave the
table consistent (no duplicate video_id, no half shard, earlier rows untouched) and must not stop the
re-run from finishing.

The runs go through the `dagster asset materialize` command users run, against one Ray cluster the
test starts itself (as a shared cluster would be run), so killing a run's process group leaves the
cluster up, exactly like a lost Dagster run on a real deployment. Every process of that cluster is
found by the test's own temp folder in its command line and killed at the end.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import lance
import pytest

from kinetics_assets.depth.random_model import save_tiny_depth_model
from kinetics_assets.ops.sample import make_clip
from tests.harness.http_server import FaultyFileServer
from tests.harness.ray_head import RayHead, running_ray_head
from tests.harness.shards import add_tar_entry, build_shard, youtube_like_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BIG_CLIPS = 40
SMALL = "part_0"
BIG = "part_1"


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head on loopback for this module alone (its runs are killed mid-step); runs join it
    with its `client_env`."""
    with running_ray_head(num_cpus=2) as head:
        yield head


def _wait_for(log_path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        content = log_path.read_text(errors="replace") if log_path.exists() else ""
        if text in content:
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {text!r}:\n{content[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} after {timeout_s} s:\n{log_path.read_text(errors='replace')[-4000:]}")


def _big_shard(root: Path, work: Path) -> list[str]:
    """`<root>/part_1.tar.gz`: a few distinct 960x540 clips repeated under Kinetics-style names, so
    transcoding takes long enough to be killed half-way while the shard builds in seconds."""
    bases = [
        make_clip(work / f"base{i}.mp4", width=960, height=540, fps=25, seconds=2.0).read_bytes() for i in range(2)
    ]
    rng = random.Random(7)
    ids = []
    with tarfile.open(root / f"{BIG}.tar.gz", "w:gz", compresslevel=1) as tar:
        for i in range(BIG_CLIPS):
            video_id = f"{youtube_like_id(rng)}_{i:06d}_{i + 10:06d}"
            data = bases[i % len(bases)]
            info = tarfile.TarInfo(f"{video_id}.mp4")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            ids.append(video_id)
    return ids


HOSTILE = {
    "link.mp4": "symbolic link",
    "hard.mp4": "hard link",
    "dev.mp4": "device or fifo",
    "fifo.mp4": "device or fifo",
    "/tmp/{tag}_abs.mp4": "absolute path",
    "../{tag}_up.mp4": "parent directory reference",
}


def _small_shard(root: Path, tag: str) -> tuple[list[str], str, int]:
    """`<root>/part_0.tar.gz`: two good clips, a clip over the member limit, and entries that must
    never be followed or written. Returns (good ids, the oversized member, the member limit)."""
    spec = build_shard(root, SMALL, n_clips=2, with_defects=False, with_junk=False)
    with tarfile.open(spec.archive_path) as tar:
        clips = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]
    limit = max(len(data) for _, data in clips) + 1
    big_member = f"{youtube_like_id(random.Random(3))}_000001_000011.mp4"
    with tarfile.open(spec.archive_path, "w:gz") as tar:
        add = functools.partial(add_tar_entry, tar)

        for name, data in clips:
            add(name, data)
        add(big_member, random.Random(4).randbytes(2 * limit))
        add("link.mp4", type=tarfile.SYMTYPE, linkname=f"/tmp/{tag}_target")
        add("hard.mp4", type=tarfile.LNKTYPE, linkname=clips[0][0])
        add("dev.mp4", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("fifo.mp4", type=tarfile.FIFOTYPE)
        add(f"/tmp/{tag}_abs.mp4", b"A" * 10)
        add(f"../{tag}_up.mp4", b"U" * 10)
    return spec.good_ids, big_member, limit


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    tag = f"kcrash_{random.Random().randrange(1 << 30):x}"
    small = _small_shard(root, tag)
    big_ids = _big_shard(root, tmp_path_factory.mktemp("work"))
    with FaultyFileServer(root) as server:
        yield server, small, big_ids, tag


def _env(tmp_path: Path, dagster_home: Path, server: FaultyFileServer, head: RayHead) -> dict[str, str]:
    manifest = tmp_path / "manifest.txt"
    manifest.write_text(f"{server.url(SMALL + '.tar.gz')}\n{server.url(BIG + '.tar.gz')}\n")
    env = {k: v for k, v in head.client_env.items() if not k.startswith(("KINETICS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(dagster_home),
        KINETICS_MANIFEST=str(manifest),
        KINETICS_DATA_ROOT=str(tmp_path / "data"),
        KINETICS_DEPTH_MODEL_PATH=str(save_tiny_depth_model(tmp_path / "tiny-depth")),
        HF_HUB_OFFLINE="1",
    )
    return env


# Runs use the project's default in-process executor: one process per run, so killing it kills the step.
DEPTH_CONFIG = json.dumps({"ops": {"depth_maps": {"config": {"sampling": "count=2"}}}})
TRANSCODE_CONFIG = json.dumps({})


def _command(select: str, partition: str, *extra: str) -> list[str]:
    return [str(BIN / "dagster"), "asset", "materialize", "-m", "kinetics_assets.definitions", "--select", select,
            "--partition", partition, *extra]  # fmt: skip


def _run(env: dict[str, str], log_path: Path, select: str, partition: str, *extra: str) -> str:
    with log_path.open("w") as log:
        proc = subprocess.Popen(_command(select, partition, *extra), cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = log_path.read_text(errors="replace")
    assert proc.returncode == 0, output[-5000:]
    return output


def _run_and_kill(env: dict[str, str], log_path: Path, select: str, partition: str, when: str, *extra: str) -> None:
    """Start a run in its own process group, wait for `when` in its log, SIGKILL the whole group."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(_command(select, partition, *extra), cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            _wait_for(log_path, when, proc, timeout_s=300)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    # Nothing of the run survives in this session (the step process shares the group).
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(proc.pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _rows(uri: str, columns: list[str]) -> list[dict]:
    return lance.dataset(uri).to_table(columns=columns).to_pylist()


def _assert_consistent(uri: str, small_rows: list[dict], big_ids: list[str]) -> list[dict]:
    """No duplicate ids; the small shard exactly as it was; the big shard all or nothing."""
    rows = _rows(uri, ["video_id", "shard", "status"])
    ids = [r["video_id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate video_id"
    assert sorted((r["video_id"], r["status"]) for r in rows if r["shard"] == SMALL) == small_rows
    big = [r for r in rows if r["shard"] == BIG]
    assert len(big) in (0, len(big_ids)), f"half a shard is visible: {len(big)} of {len(big_ids)} rows"
    return big


def _transcode_metadata(home: Path, partition: str) -> dict:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("transcoded_videos"))
        assert event is not None
        assert event.asset_materialization.partition == partition
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _release_dead_runs(home: Path) -> list[str]:
    """What an operator runs after a run process is SIGKILLed (`kinetics release-dead-runs --yes`):
    the killed runs stay STARTED and the depth step keeps its `depth` pool slot until released."""
    import dagster as dg

    from kinetics_assets.ops.dead_runs import find_dead_runs, release_run

    with dg.DagsterInstance.from_config(str(home)) as instance:
        dead = find_dead_runs(instance)
        for run in dead:
            release_run(instance, run.run_id, "run process was killed (SIGKILL); released by the test")
        assert find_dead_runs(instance) == []
    return [run.run_id for run in dead]


def _pool_claims(home: Path, pool: str) -> list[str]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        if not instance.event_log_storage.supports_global_concurrency_limits:
            return []
        info = instance.event_log_storage.get_concurrency_info(pool)
        return [slot.run_id for slot in info.claimed_slots]


def test_killed_transcode_and_depth_runs_leave_a_consistent_table(served, tmp_path, dagster_home, ray_cluster):
    server, (good_ids, big_member, member_limit), big_ids, tag = served
    env = _env(tmp_path, dagster_home, server, ray_cluster)
    uri = str(tmp_path / "data" / "lance" / "custom.lance")
    logs = tmp_path / "logs"
    logs.mkdir()

    # A first shard, complete: its rows must survive everything that follows. Its hostile entries
    # are listed with their reasons, never written; its oversized clip is a failed row.
    limits = json.dumps({"ops": {"transcoded_videos": {"config": {
        "max_member_bytes": member_limit, "max_failure_rate": 1.0}}}})  # fmt: skip
    _run(env, logs / "small.log", "raw_archives,transcoded_videos", SMALL, "--config-json", limits)
    small_rows = sorted((r["video_id"], r["status"]) for r in _rows(uri, ["video_id", "status"]))
    assert sorted(v for v, s in small_rows if s == "ok") == sorted(good_ids)
    failed = _rows(uri, ["source_member", "error_type", "error_message"])
    failed = [r for r in failed if r["error_type"]]
    assert len(failed) == 1
    assert failed[0]["source_member"] == big_member
    assert failed[0]["error_type"] == "limit_exceeded"
    assert big_member in failed[0]["error_message"]
    assert f"max_member_bytes={member_limit}" in failed[0]["error_message"]
    meta = _transcode_metadata(dagster_home, SMALL)
    assert meta["skipped_members_count"] == len(HOSTILE)
    for name, reason in HOSTILE.items():
        assert f"| {name.format(tag=tag)} | unsafe | {reason} |" in meta["skipped_members"]
    leaked = [p for p in (Path("/tmp"), tmp_path, tmp_path.parent) for p in p.glob(f"{tag}*")]
    assert leaked == []
    assert not list((tmp_path / "data").rglob(f"*{tag}*"))

    # Killed half-way through transcoding the big shard.
    _run_and_kill(env, logs / "killed_transcode.log", "raw_archives,transcoded_videos", BIG, "25 clips transcoded",
                  "--config-json", TRANSCODE_CONFIG)  # fmt: skip
    big = _assert_consistent(uri, small_rows, big_ids)
    assert big == [], "the killed run cannot have committed: it was stopped before its last clip"

    # The re-run (same command) is not blocked by the dead run and publishes the whole shard once.
    _run(env, logs / "rerun_transcode.log", "raw_archives,transcoded_videos", BIG, "--config-json", TRANSCODE_CONFIG)
    big = _assert_consistent(uri, small_rows, big_ids)
    assert sorted(r["video_id"] for r in big) == sorted(big_ids)
    assert {r["status"] for r in big} == {"ok"}
    version_before_depth = lance.dataset(uri).version

    # Killed half-way through depth: depth is absent for the shard (one merge commit, not made).
    _run_and_kill(env, logs / "killed_depth.log", "depth_maps", BIG, f"depth done for 10/{BIG_CLIPS}",
                  "--config-json", DEPTH_CONFIG)  # fmt: skip
    _assert_consistent(uri, small_rows, big_ids)
    depth = _rows(uri, ["video_id", "shard", "depth_status"])
    statuses = [r["depth_status"] for r in depth if r["shard"] == BIG]
    assert statuses == [None] * len(big_ids), "depth of part of a shard is visible"
    # The dead run still holds its `depth` pool slot (when the instance limits the pool), which
    # would block the re-run forever: release it as README "Crashes" says.
    held = _pool_claims(dagster_home, "depth")
    released = _release_dead_runs(dagster_home)
    assert len(released) == 2  # the killed transcode run and the killed depth run, both still STARTED
    assert set(held) <= set(released)
    assert _pool_claims(dagster_home, "depth") == []

    # The re-run completes depth for every ok video of the shard, without touching the rows.
    _run(env, logs / "rerun_depth.log", "depth_maps", BIG, "--config-json", DEPTH_CONFIG)
    big = _assert_consistent(uri, small_rows, big_ids)
    assert sorted(r["video_id"] for r in big) == sorted(big_ids)
    depth = [r for r in _rows(uri, ["shard", "depth_status", "depth_frames"]) if r["shard"] == BIG]
    assert [r["depth_status"] for r in depth] == ["ok"] * len(big_ids)
    assert {r["depth_frames"] for r in depth} == {2}
    assert lance.dataset(uri).version > version_before_depth


# ---------------------------------------------------------------------------------------------- old versions
