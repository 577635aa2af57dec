"""A real `dagster-webserver` and `dagster-daemon` on 127.0.0.1, and backfills launched the way the UI
launches them (its GraphQL mutation). Shared by the UI test and the backfill benchmark.

Each server runs in its own process group and is stopped by it (never by name).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from tests.harness.processes import free_loopback_port, stop_process_group

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

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

FINISHED = ("COMPLETED", "COMPLETED_SUCCESS")
ENDED_BADLY = ("FAILED", "COMPLETED_FAILED", "CANCELED")


class StackError(RuntimeError):
    """The webserver, the daemon or a backfill did not do what was expected; the message holds the
    servers' log tails."""


@dataclass
class DagsterStack:
    url: str
    home: Path
    logs: dict[str, Path]

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})  # noqa: S310 - our loopback http URL
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our loopback http URL
            payload = json.loads(response.read())
        if "errors" in payload:
            raise StackError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{path.read_text(errors='replace')[-3000:]}" for name, path in self.logs.items()
        )

    def launch_backfill(self, assets: list[str], partitions: list[str], run_config: dict | None = None) -> str:
        """Launch a backfill as the UI's "Materialize" dialog does; returns its id."""
        params = {
            "assetSelection": [{"path": [name]} for name in assets],
            "partitionNames": partitions,
            "fromFailure": False,
            "tags": [],
        }
        if run_config:
            params["runConfigData"] = run_config
        launched = self.graphql(LAUNCH_BACKFILL, {"backfillParams": params})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise StackError(f"backfill not launched: {launched}")
        return launched["backfillId"]

    def wait_for_backfill(
        self, backfill_id: str, timeout_s: float, on_bad_end: Callable[[str], str] | None = None
    ) -> dict:
        """The backfill's status once it completed; a StackError if it ended otherwise or in time."""

        def finished():
            status = self.graphql(BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
            if status["__typename"] != "PartitionBackfill":
                raise StackError(f"backfill {backfill_id}: {status}")
            if status["status"] in ENDED_BADLY:
                details = on_bad_end(backfill_id) if on_bad_end else ""
                raise StackError(
                    f"backfill {backfill_id} ended {status['status']}: {status}\n{details}\n{self.log_tails()}"
                )
            return status if status["status"] in FINISHED else None

        return wait_for(f"backfill {backfill_id}", finished, timeout_s, self, interval_s=2.0)


def wait_for(
    what: str, probe: Callable[[], object], timeout_s: float, stack: DagsterStack | None = None, interval_s: float = 1.0
):
    """Poll `probe` until it returns something true; a StackError after `timeout_s`."""
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
    raise StackError(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_error})\n{tails}")


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # Own process group: the code servers and run workers these start are stopped with them.
    with log.open("w") as out:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextmanager
def dagster_stack(
    home: Path, env: dict[str, str], log_dir: Path, startup_timeout_s: float = 180
) -> Iterator[DagsterStack]:
    """The daemon and the webserver (default host: 127.0.0.1) over the instance in `home`, with the
    code location of workspace.yaml loaded; both stopped on exit."""
    # Create the instance's storage once here: the webserver and the daemon starting together on an
    # empty home would both try to create the sqlite tables.
    dg.DagsterInstance.from_config(str(home)).dispose()
    env = {**env, "DAGSTER_HOME": str(home)}
    port = free_loopback_port()
    stack = DagsterStack(
        url=f"http://127.0.0.1:{port}",
        home=home,
        logs={"webserver": log_dir / "webserver.log", "daemon": log_dir / "daemon.log"},
    )
    processes: list[subprocess.Popen] = []
    try:
        processes.append(
            _start([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, stack.logs["daemon"])
        )
        processes.append(
            _start(
                [str(BIN / "dagster-webserver"), "-p", str(port), "-w", "workspace.yaml"], env, stack.logs["webserver"]
            )
        )

        def webserver_up():
            for proc, name in zip(processes, ("dagster-daemon", "dagster-webserver"), strict=True):
                if proc.poll() is not None:
                    raise StackError(f"{name} exited with {proc.returncode}\n{stack.log_tails()}")
            return urllib.request.urlopen(f"{stack.url}/server_info", timeout=5).status == 200  # noqa: S310 - our loopback http URL

        wait_for("the webserver", webserver_up, startup_timeout_s, stack)

        def loaded():
            entries = stack.graphql(WORKSPACE_STATUS)["workspaceOrError"]["locationEntries"]
            for entry in entries:
                if entry["locationOrLoadError"] and entry["locationOrLoadError"]["__typename"] == "PythonError":
                    raise StackError(
                        f"code location {entry['name']} failed to load: {entry['locationOrLoadError']['message']}"
                    )
            return entries and all(e["loadStatus"] == "LOADED" for e in entries)

        wait_for("the code location to load", loaded, startup_timeout_s, stack)
        yield stack
    finally:
        for proc in processes:
            stop_process_group(proc.pid, grace_s=10, leader=proc)
