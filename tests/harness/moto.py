"""moto's S3 server on loopback: the one starter the tests, soaks and benchmarks share."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.harness.processes import free_loopback_port, stop_process_group

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def running_moto_server(log_dir: Path) -> Iterator[str]:
    """moto's S3 server on a free loopback port, in its own process group, stopped (that group only)
    on exit; yields its endpoint URL once it answers S3 requests. Any credentials are accepted."""
    import boto3  # from moto[server], a test dependency

    port = free_loopback_port()
    endpoint = f"http://127.0.0.1:{port}"
    with (Path(log_dir) / "moto.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            client = boto3.client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id="test",
                aws_secret_access_key="test",  # noqa: S106 - moto's server takes any key
                region_name="us-east-1",
            )
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.list_buckets()
                    break
                except Exception as exc:
                    if proc.poll() is not None:
                        msg = f"moto server exited with {proc.returncode} (log: {log_dir}/moto.log)"
                        raise RuntimeError(msg) from exc
                    if time.monotonic() > deadline:
                        msg = f"moto server did not answer on {endpoint} within 30 s"
                        raise RuntimeError(msg) from exc
                    time.sleep(0.1)
            yield endpoint
        finally:
            stop_process_group(proc.pid, grace_s=10, leader=proc)
