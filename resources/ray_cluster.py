"""Ray as a Dagster resource: connect once per process, shut down only what this process started."""


import os
from typing import Any

import dagster as dg

# Under `uv run`, Ray would otherwise rebuild the project in a fresh venv for its workers; the workers
# of a local Ray already share this interpreter and its packages. Read by Ray when it is imported.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import ray  # noqa: E402
from pydantic import PrivateAttr


class RayResource(dg.ConfigurableResource):
    """Where the per-video work runs.

    `address` unset (and no RAY_ADDRESS) starts a local Ray for this step; `auto`, `host:port` or
    `ray://host:port` join a running cluster, which is how many runs share one cluster without each
    paying Ray's start-up (see README, "One Ray cluster for many runs").
    """

    address: str | None = None
    num_cpus: int | None = None
    """CPUs of a local Ray this resource starts; ignored when joining a cluster."""
    object_store_memory_mb: int | None = None
    runtime_env: dict[str, Any] | None = None
    namespace: str = "kinetics"

    _started_here: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {
            "namespace": self.namespace,
            "runtime_env": self.runtime_env,
            "log_to_driver": True,
            "include_dashboard": False,
        }
        if address is None:
            kwargs["num_cpus"] = self.num_cpus
            if self.object_store_memory_mb:
                kwargs["object_store_memory"] = self.object_store_memory_mb * 1024 * 1024
        ray.init(address=address, **kwargs)
        self._started_here = address is None
        if context.log is not None:
            where = "a local Ray started for this step" if self._started_here else f"Ray cluster at {address}"
            context.log.info(f"Using {where}: {ray.cluster_resources().get('CPU', 0):.0f} CPUs")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._started_here and ray.is_initialized():
            ray.shutdown()
            self._started_here = False

    def cluster_cpus(self) -> int:
        return int(ray.cluster_resources().get("CPU", 1))
