"""A backfill launched the way the UI launches one, against real `dagster-webserver` and
`dagster-daemon` processes whose runs all join one shared Ray cluster; then the UI itself, in a
headless Chromium.

Everything listens on 127.0.0.1. The instance is a temporary copy of `dagster_home/dagster.yaml`, so
the run queue, run retries and the `depth` pool limit under test are the project's own.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import lance
import pytest

from kinetics_assets.defs.pipeline import PARTITIONED_ASSETS
from kinetics_assets.steps.checks import (
    DEPTH_CHECKS,
    FRAME_STATS_CHECKS,
    RAW_CHECKS,
    TRANSCODE_CHECKS,
    TRANSCRIPT_CHECKS,
)
from tests.harness.dagster_stack import DagsterStack, StackError, dagster_stack
from tests.harness.http_server import FaultyFileServer
from tests.harness.shards import build_shard
from tests.harness.tiny_depth import save_tiny_depth_model
from tests.harness.tiny_whisper import save_tiny_whisper_model

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = ["part_0", "part_1", "part_2", "part_3"]
PARTITIONS_PER_RUN = 2  # the backfill policy batches the four partitions into two runs
BACKFILLED_ASSETS = ["raw_archives", "transcoded_videos", "depth_maps", "transcripts", "frame_stats"]
CHECKS = {
    "raw_archives": RAW_CHECKS,
    "transcoded_videos": TRANSCODE_CHECKS,
    "depth_maps": DEPTH_CHECKS,
    "transcripts": TRANSCRIPT_CHECKS,
    "frame_stats": FRAME_STATS_CHECKS,
}
CLIPS_PER_SHARD = 2
BACKFILL_TIMEOUT_S = 600
UI_TIMEOUT_MS = 90_000  # per browser action or assertion

# Start-up of Ray, the webserver and the daemon plus the backfill itself: minutes on two busy cores.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory, ray_head):
    root = tmp_path_factory.mktemp("ui_backfill")
    served = root / "served"
    specs = [
        build_shard(served, name, n_clips=CLIPS_PER_SHARD, with_defects=False, seed=i)
        for i, name in enumerate(PARTITIONS)
    ]
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    model = save_tiny_depth_model(root / "tiny_depth_model")
    whisper = save_tiny_whisper_model(root / "tiny_whisper_model")
    data_root = root / "data"
    with FaultyFileServer(served) as server:
        manifest = root / "manifest.txt"
        manifest.write_text("".join(server.url(spec.archive_path.name) + "\n" for spec in specs))
        env = {k: v for k, v in ray_head.client_env.items() if not k.startswith(("KINETICS_", "DAGSTER_"))}
        env.update(
            KINETICS_MANIFEST=str(manifest),
            KINETICS_DATA_ROOT=str(data_root),
            KINETICS_DEPTH_MODEL_PATH=str(model),
            KINETICS_SPEECH_MODEL_PATH=str(whisper),
            KINETICS_PARTITIONS_PER_RUN=str(PARTITIONS_PER_RUN),
            HF_HUB_OFFLINE="1",
        )
        try:
            # No `-h`: the default host is under test (127.0.0.1, see test_webserver_listens_on_loopback_only).
            with dagster_stack(home, env, root) as stack:
                yield UiStack(stack, str(data_root / "lance" / "custom.lance"), ray_head.address)
        except StackError as exc:
            pytest.fail(str(exc))


@dataclass
class UiStack:
    stack: DagsterStack
    lance_uri: str
    ray_address: str

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def home(self) -> Path:
        return self.stack.home


@pytest.fixture(scope="module")
def backfill(ui_stack):
    """Launch a backfill of four partitions of the shard assets with the UI's own mutation."""
    stack = ui_stack.stack
    try:
        backfill_id = stack.launch_backfill(BACKFILLED_ASSETS, PARTITIONS)
        status = stack.wait_for_backfill(
            backfill_id, BACKFILL_TIMEOUT_S, on_bad_end=lambda b: _run_failures(ui_stack, b)
        )
    except StackError as exc:
        pytest.fail(str(exc))
    with dg.DagsterInstance.from_config(str(ui_stack.home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter.for_backfill(backfill_id))
        run_ids = [run.run_id for run in runs]
        statuses = {run.run_id: run.status for run in runs}
    return {"id": backfill_id, "status": status, "run_ids": run_ids, "run_statuses": statuses}


def _run_failures(stack: UiStack, backfill_id: str) -> str:
    lines = []
    with dg.DagsterInstance.from_config(str(stack.home)) as instance:
        for run in instance.get_runs(filters=dg.RunsFilter.for_backfill(backfill_id)):
            lines.append(f"run {run.run_id} {run.status.value} tags={dict(run.tags)}")
            for record in instance.all_logs(run.run_id):
                event = record.dagster_event
                if (event is not None and event.is_failure) or record.level >= logging.ERROR:
                    lines.append(f"  {record.step_key}: {record.message[:400]}")
                    if event is not None and event.is_step_failure and event.step_failure_data.error:
                        lines.append(f"    {event.step_failure_data.error.to_string()[-1500:]}")
    return "\n".join(lines)


def test_backfill_materializes_every_asset_partition_and_check(ui_stack, backfill):
    assert backfill["status"]["numPartitions"] == len(PARTITIONS)
    assert sorted(backfill["status"]["partitionNames"]) == PARTITIONS
    # The backfill policy: two runs of two partitions each, not one run per partition.
    assert len(backfill["run_ids"]) == len(PARTITIONS) // PARTITIONS_PER_RUN, backfill["run_ids"]
    assert set(backfill["run_statuses"].values()) == {dg.DagsterRunStatus.SUCCESS}, backfill["run_statuses"]

    expected_checks = {(asset, check.name) for asset, checks in CHECKS.items() for check in checks}
    seen_checks: dict[tuple[str, str, str], bool] = {}
    with dg.DagsterInstance.from_config(str(ui_stack.home)) as instance:
        for asset in BACKFILLED_ASSETS:
            materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert set(PARTITIONS) <= materialized, f"{asset}: materialized partitions {sorted(materialized)}"
        ranges = set()
        for run_id in backfill["run_ids"]:
            run = instance.get_run_by_id(run_id)
            ranges.add((run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]))
            for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
                # Each shard's checks are recorded for its own partition, inside the run of several.
                evaluation = record.dagster_event.event_specific_data
                key = (evaluation.asset_key.to_user_string(), evaluation.check_name, evaluation.partition)
                seen_checks[key] = evaluation.passed
            for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
                materialization = record.dagster_event.event_specific_data.materialization
                if materialization.asset_key == dg.AssetKey("transcoded_videos"):
                    assert materialization.metadata["rows_ok"].value == CLIPS_PER_SHARD, materialization.partition
        assert ranges == {("part_0", "part_1"), ("part_2", "part_3")}
    for partition in PARTITIONS:
        for asset, check in expected_checks:
            assert seen_checks.get((asset, check, partition)) is True, (
                f"check {asset}.{check} [{partition}]: {seen_checks.get((asset, check, partition), 'not evaluated')}"
            )

    table = lance.dataset(ui_stack.lance_uri).to_table(columns=["video_id", "shard", "status", "depth_status"])
    rows = table.to_pylist()
    assert sorted({row["shard"] for row in rows}) == PARTITIONS
    assert len(rows) == CLIPS_PER_SHARD * len(PARTITIONS)
    assert {(row["status"], row["depth_status"]) for row in rows} == {("ok", "ok")}
    assert len({row["video_id"] for row in rows}) == len(rows)


def test_runs_join_the_shared_ray_cluster(ui_stack, backfill):
    joined: set[str] = set()
    with dg.DagsterInstance.from_config(str(ui_stack.home)) as instance:
        for run_id in backfill["run_ids"]:
            for record in instance.all_logs(run_id):
                if f"Ray cluster at {ui_stack.ray_address}" in (record.user_message or ""):
                    joined.add(run_id)
                assert "local Ray started for this step" not in (record.user_message or ""), record.user_message
    assert joined == set(backfill["run_ids"])


def test_depth_steps_hold_the_depth_pool_one_at_a_time(ui_stack, backfill):
    """dagster.yaml's pool default_limit is 1: the two runs' depth steps never overlap, and each
    run's one depth step loads the model once for its two shards."""
    intervals = []
    with dg.DagsterInstance.from_config(str(ui_stack.home)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        for run_id in backfill["run_ids"]:
            starts = [
                r.timestamp
                for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
                if r.step_key == "depth_maps"
            ]
            ends = [
                r.timestamp
                for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
                if r.step_key == "depth_maps"
            ]
            if starts and ends:
                intervals.append((min(starts), max(ends)))
        pool = instance.event_log_storage.get_pool_limits()
    assert len(intervals) == len(PARTITIONS) // PARTITIONS_PER_RUN, intervals
    intervals.sort()
    for (_, first_end), (second_start, _) in itertools.pairwise(intervals):
        assert first_end <= second_start, f"depth steps overlapped: {intervals}"
    assert [(p.name, p.limit) for p in pool if p.name == "depth"] in ([], [("depth", 1)])


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, from the kernel's socket tables."""
    import ipaddress

    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(str(ipaddress.ip_address(packed if width == 16 else packed[:4])))
    return found


def test_webserver_listens_on_loopback_only(ui_stack):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp on this system: cannot list listening sockets")
    port = int(ui_stack.url.rsplit(":", 1)[1])
    assert _listening_addresses(port) == {"127.0.0.1"}


def _chromium() -> str:
    path = os.environ.get("KINETICS_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.skip("Chromium not installed (Debian package `chromium`; .ci/run installs it): no browser checks")
    return path


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("KINETICS_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
        path = Path(keep) / path.name
    print(f"screenshot: {path}")  # noqa: T201 - where to look, for whoever runs it with -s
    return path


def check_ui_pages(url: str, chromium: str, out_dir: Path) -> list[Path]:
    """Open the lineage graph and depth_maps' partitions in headless Chromium, assert what they show
    after the backfill, and return the screenshots."""
    from playwright.sync_api import expect, sync_playwright

    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
    ]
    checks_per_asset = {asset: len(checks) for asset, checks in CHECKS.items()}
    # Assertions wait as long as actions do: on a loaded machine the webserver takes well over
    # Playwright's 5 s default to fill in the asset summaries after the page itself has shown.
    expect.set_options(timeout=UI_TIMEOUT_MS)
    shots = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            # A first-visit "join the community" dialog covers the page: skip it whenever it shows.
            page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())

            # The global asset lineage graph (the "Lineage" entry of the navigation).
            page.goto(f"{url}/asset-groups")
            try:
                expect(page.get_by_text("Global asset lineage")).to_be_visible()
                for name, count in checks_per_asset.items():
                    expect(page.get_by_text(name, exact=True).first).to_be_visible()
                    # Each node's summary: its checks all passed, every partition filled.
                    expect(page.get_by_text(f"{count} / {count} Passed", exact=True).first).to_be_visible()
                expect(page.get_by_text("100% filled", exact=True)).to_have_count(len(checks_per_asset))
                # Every shard asset has the four partitions; the ones not backfilled are not filled.
                partition_counts = page.get_by_text(f"{len(PARTITIONS)} partitions", exact=True)
                expect(partition_counts).to_have_count(len(PARTITIONED_ASSETS))
            finally:
                page.get_by_text("Join the Dagster community").wait_for(state="hidden")
                shots.append(_screenshot(page, out_dir, "asset_lineage"))

            # depth_maps' partitions: both keys listed, both materialized, none failed or missing.
            page.goto(f"{url}/assets/depth_maps?view=partitions")
            try:
                for key in PARTITIONS:
                    expect(page.get_by_text(key, exact=True).first).to_be_visible()
                expect(page.get_by_text(f"Materialized ({len(PARTITIONS)})", exact=True)).to_be_visible()
                expect(page.get_by_text("Failed (0)", exact=True)).to_be_visible()
                expect(page.get_by_text("Missing (0)", exact=True)).to_be_visible()
                # One partition's latest materialization, with the asset's own metadata.
                page.get_by_text(PARTITIONS[0], exact=True).first.click()
                expect(page.get_by_text("frames_per_s", exact=True)).to_be_visible()
                expect(page.get_by_text("pretrained_weights", exact=True)).to_be_visible()
            finally:
                shots.append(_screenshot(page, out_dir, "depth_maps_partitions"))
        finally:
            browser.close()
    return shots


def test_ui_shows_the_lineage_and_the_backfilled_partitions(ui_stack, backfill, tmp_path):
    shots = check_ui_pages(ui_stack.url, _chromium(), tmp_path)
    assert all(shot.stat().st_size > 10_000 for shot in shots)
