"""A backfill launched the way the UI launches one, against real `dagster-webserver` and
`dagster-daemon` processes whose runs all join one shared Ray cluster; then the UI itself, in a
headless Chromium.

Everything listens on 127.0.0.1. The instance is a temporary copy of `dagster_home/dagster.yaml`, so
the run queue, run retries and the `depth` pool limit under test are the project's own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import lance
import pytest

from kinetics_assets.assets import DEPTH_CHECKS, RAW_CHECKS, TRANSCODE_CHECKS
from tests.harness.processes import free_loopback_port, stop_process_group
from tests.harness.http_server import FaultyFileServer
from tests.harness.shards import build_shard
from tests.harness.tiny_depth import save_tiny_depth_model

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PARTITIONS = ["part_0", "part_1"]
BACKFILLED_ASSETS = ["raw_archives", "transcoded_videos", "depth_maps"]
CLIPS_PER_SHARD = 2
BACKFILL_TIMEOUT_S = 600
UI_TIMEOUT_MS = 90_000  # per browser action or assertion

# Start-up of Ray, the webserver and the daemon plus the backfill itself: minutes on two busy cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      id status numPartitions partitionNames
      assetSelection { path }
      error { message }
    }
    ... on PythonError { message }
    ... on BackfillNotFoundError { message }
  }
}
"""

WORKSPACE_STATUS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""


@dataclass
class UiStack:
    url: str
    home: Path
    lance_uri: str
    ray_address: str
    logs: dict[str, Path]
    screenshots: list[Path] = field(default_factory=list)

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload["errors"]
        return payload["data"]

    def log_tails(self) -> str:
        return "\n".join(f"--- {name} ---\n{path.read_text(errors='replace')[-3000:]}"
                         for name, path in self.logs.items())


def _wait_for(what: str, probe, timeout_s: float, stack: UiStack | None = None, interval_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last_error = exc
        time.sleep(interval_s)
    tails = stack.log_tails() if stack else ""
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_error})\n{tails}")


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # Own process group: the code servers and run workers these start are stopped with them.
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


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
    # Create the instance's storage once here: the webserver and the daemon starting together on an
    # empty home would both try to create the sqlite tables.
    dg.DagsterInstance.from_config(str(home)).dispose()
    model = save_tiny_depth_model(root / "tiny_depth_model")
    data_root = root / "data"
    processes: list[subprocess.Popen] = []
    with FaultyFileServer(served) as server:
        manifest = root / "manifest.txt"
        manifest.write_text("".join(server.url(spec.archive_path.name) + "\n" for spec in specs))
        env = {k: v for k, v in ray_head.client_env.items() if not k.startswith(("KINETICS_", "DAGSTER_"))}
        env.update(
            DAGSTER_HOME=str(home),
            KINETICS_MANIFEST=str(manifest),
            KINETICS_DATA_ROOT=str(data_root),
            KINETICS_DEPTH_MODEL_PATH=str(model),
            HF_HUB_OFFLINE="1",
        )
        port = free_loopback_port()
        stack = UiStack(
            url=f"http://127.0.0.1:{port}",
            home=home,
            lance_uri=str(data_root / "lance" / "custom.lance"),
            ray_address=ray_head.address,
            logs={"webserver": root / "webserver.log", "daemon": root / "daemon.log"},
        )
        try:
            processes.append(_start([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env,
                                    stack.logs["daemon"]))
            processes.append(_start(
                # No `-h`: the default host is under test (127.0.0.1, see test_webserver_listens_on_loopback_only).
                [str(BIN / "dagster-webserver"), "-p", str(port), "-w", "workspace.yaml"],
                env, stack.logs["webserver"],
            ))

            def webserver_up():
                for proc, name in zip(processes, ("dagster-daemon", "dagster-webserver")):
                    if proc.poll() is not None:
                        pytest.fail(f"{name} exited with {proc.returncode}\n{stack.log_tails()}")
                return urllib.request.urlopen(f"{stack.url}/server_info", timeout=5).status == 200

            _wait_for("the webserver", webserver_up, 180, stack)

            def loaded():
                entries = stack.graphql(WORKSPACE_STATUS)["workspaceOrError"]["locationEntries"]
                for entry in entries:
                    if entry["locationOrLoadError"] and entry["locationOrLoadError"]["__typename"] == "PythonError":
                        pytest.fail(f"code location {entry['name']} failed to load: "
                                    f"{entry['locationOrLoadError']['message']}")
                return entries and all(e["loadStatus"] == "LOADED" for e in entries)

            _wait_for("the code location to load", loaded, 180, stack)
            yield stack
        finally:
            for proc in processes:
                stop_process_group(proc.pid, grace_s=10, leader=proc)


@pytest.fixture(scope="module")
def backfill(ui_stack):
    """Launch a backfill of two partitions of the three shard assets with the UI's own mutation."""
    params = {
        "assetSelection": [{"path": [name]} for name in BACKFILLED_ASSETS],
        "partitionNames": PARTITIONS,
        "fromFailure": False,
        "tags": [],
        # The launchpad's executor choice: one process per run rather than one per step keeps the
        # test within its budget on two cores (each step process imports torch, Ray and Dagster).
        "runConfigData": {"execution": {"config": {"in_process": {}}}},
    }
    launched = ui_stack.graphql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def finished():
        status = ui_stack.graphql(BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        assert status["__typename"] == "PartitionBackfill", status
        if status["status"] in ("FAILED", "COMPLETED_FAILED", "CANCELED"):
            pytest.fail(f"backfill {backfill_id} ended {status['status']}: {status}\n"
                        f"{_run_failures(ui_stack, backfill_id)}"
                        f"\n{ui_stack.log_tails()}")
        return status if status["status"] in ("COMPLETED", "COMPLETED_SUCCESS") else None

    status = _wait_for(f"backfill {backfill_id}", finished, BACKFILL_TIMEOUT_S, ui_stack, interval_s=2.0)
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
    assert backfill["run_ids"], "the backfill launched no runs"
    assert set(backfill["run_statuses"].values()) == {dg.DagsterRunStatus.SUCCESS}, backfill["run_statuses"]

    specs = [*RAW_CHECKS, *TRANSCODE_CHECKS, *DEPTH_CHECKS]
    expected_checks = {(spec.asset_key.to_user_string(), spec.name) for spec in specs}
    seen_checks: dict[tuple[str, str, str], bool] = {}
    with dg.DagsterInstance.from_config(str(ui_stack.home)) as instance:
        for asset in BACKFILLED_ASSETS:
            materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert set(PARTITIONS) <= materialized, f"{asset}: materialized partitions {sorted(materialized)}"
        for run_id in backfill["run_ids"]:
            run = instance.get_run_by_id(run_id)
            partition = run.tags["dagster/partition"]
            for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
                evaluation = record.dagster_event.event_specific_data
                key = (evaluation.asset_key.to_user_string(), evaluation.check_name, partition)
                seen_checks[key] = evaluation.passed
    for partition in PARTITIONS:
        for asset, check in expected_checks:
            assert seen_checks.get((asset, check, partition)) is True, (
                f"check {asset}.{check} [{partition}]: {seen_checks.get((asset, check, partition), 'not evaluated')}")

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
    """dagster.yaml's pool default_limit is 1: the two runs' depth steps never overlap."""
    intervals = []
    with dg.DagsterInstance.from_config(str(ui_stack.home)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        for run_id in backfill["run_ids"]:
            starts = [r.timestamp for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
                      if r.step_key == "depth_maps"]
            ends = [r.timestamp for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
                    if r.step_key == "depth_maps"]
            if starts and ends:
                intervals.append((min(starts), max(ends)))
        pool = instance.event_log_storage.get_pool_limits()
    assert len(intervals) == len(PARTITIONS), intervals
    intervals.sort()
    for (_, first_end), (second_start, _) in zip(intervals, intervals[1:]):
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
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
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
    print(f"screenshot: {path}")
    return path


def check_ui_pages(url: str, chromium: str, out_dir: Path) -> list[Path]:
    """Open the lineage graph and depth_maps' partitions in headless Chromium, assert what they show
    after the backfill, and return the screenshots."""
    from playwright.sync_api import expect, sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"]
    checks_per_asset = {"raw_archives": len(RAW_CHECKS), "transcoded_videos": len(TRANSCODE_CHECKS),
                        "depth_maps": len(DEPTH_CHECKS)}
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
                partition_counts = page.get_by_text(f"{len(PARTITIONS)} partitions", exact=True)
                expect(partition_counts).to_have_count(len(checks_per_asset))
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
