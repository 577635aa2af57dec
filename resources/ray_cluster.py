"""Ray as a Dagster resource: connect once per process, shut down only what this process started.

Ray is imported when the resource is set up for a step (or asked about the cluster), not when the
code location is loaded: the webserver, the daemon and a run that needs no Ray never pay for it.
"""

import os
import socket
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from resources.execution import ClipExecution

if TYPE_CHECKING:
    from kinetics_assets.distributed.options import RayStageOptions
    from kinetics_assets.stages.executor import StageExecutor
    from kinetics_assets.steps.clip_window import TranscodeExecutor
    from resources.hub_model import HubModelResource

DEFAULT_CONNECT_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_ENV = "KINETICS_RAY_CONNECT_TIMEOUT_S"


class RayUnreachable(RuntimeError):  # noqa: N818 - the name users see in a failed step; kept
    """A configured Ray address did not answer in time; the message names the address."""


def _ray() -> ModuleType:
    """Ray, imported on first use."""
    # Under `uv run`, Ray would otherwise rebuild the project in a fresh venv for its workers; the workers
    # of a local Ray already share this interpreter and its packages. Read by Ray when it is imported.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    return ray


class RayResource(ClipExecution):
    """Where the per-video work runs.

    `address` unset (and no RAY_ADDRESS) starts a local Ray for this step, always: Ray's own default
    (`address=None`) would instead join the last cluster `ray start` recorded on this machine, and
    wait ten minutes on it when that head has died. `auto`, `host:port` or `ray://host:port` join a
    running cluster, which is how many runs share one cluster without each paying Ray's start-up
    (see README, "One Ray cluster for many runs"); an address that does not accept a connection
    within `connect_timeout_s` fails the step with a message naming it.
    """

    address: str | None = None
    num_cpus: int | None = None
    """CPUs of a local Ray this resource starts; ignored when joining a cluster."""
    object_store_memory_mb: int | None = None
    runtime_env: dict[str, Any] | None = None
    namespace: str = "kinetics"
    connect_timeout_s: float | None = None
    """Seconds a configured address has to accept a connection; default KINETICS_RAY_CONNECT_TIMEOUT_S,
    else 15."""

    _started_here: bool = PrivateAttr(default=False)

    def resolved_address(self) -> str:
        """The address given to `ray.init`: "local" unless an address is configured here or in RAY_ADDRESS."""
        return (self.address or os.environ.get("RAY_ADDRESS") or "").strip() or "local"

    def resolved_connect_timeout_s(self) -> float:
        if self.connect_timeout_s is not None:
            value: Any = self.connect_timeout_s
            source = "RayResource.connect_timeout_s"
        else:
            value = os.environ.get(CONNECT_TIMEOUT_ENV) or DEFAULT_CONNECT_TIMEOUT_S
            source = CONNECT_TIMEOUT_ENV
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"{source}={value!r} is not a number of seconds") from None
        if not seconds > 0:
            raise ValueError(f"{source} must be > 0, got {seconds}")
        return seconds

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        ray = _ray()
        if ray.is_initialized():
            return
        address = self.resolved_address()
        kwargs: dict[str, Any] = {
            "namespace": self.namespace,
            "runtime_env": self.runtime_env,
            "log_to_driver": True,
            "include_dashboard": False,
        }
        local = address == "local"
        if local:
            kwargs["num_cpus"] = self.num_cpus
            if self.object_store_memory_mb:
                kwargs["object_store_memory"] = self.object_store_memory_mb * 1024 * 1024
        else:
            wait_until_reachable(address, self.resolved_connect_timeout_s())
        ray.init(address=address, **kwargs)
        self._started_here = local
        if context.log is not None:
            where = "a local Ray started for this step" if local else f"Ray cluster at {address}"
            context.log.info("Using %s: %.0f CPUs", where, ray.cluster_resources().get("CPU", 0))

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:  # noqa: ARG002 - Dagster's signature
        ray = _ray()
        if self._started_here and ray.is_initialized():
            ray.shutdown()
            self._started_here = False

    def cluster_cpus(self) -> int:
        return int(_ray().cluster_resources().get("CPU", 1))

    def transcode_executor(self, *, max_in_flight: int | None) -> "tuple[TranscodeExecutor, int]":
        """Ray tasks, `max_in_flight` clips at once (default twice the cluster's CPUs)."""
        from kinetics_assets.distributed.transcode import RayTranscodeExecutor, RayTranscodeOptions

        in_flight = max_in_flight or 2 * self.cluster_cpus()
        return RayTranscodeExecutor(options=RayTranscodeOptions(max_in_flight=in_flight)), in_flight

    def stage_executor(self, options: "RayStageOptions") -> "StageExecutor":
        from kinetics_assets.distributed.stage_executor import RayStageExecutor

        return RayStageExecutor(options=options)

    def model_layout(self, model: "HubModelResource", *, steps_at_once: int) -> dict[str, Any]:
        actors, gpus = model.actor_layout(steps_at_once=steps_at_once)
        return {"actors": actors, "actor_num_gpus": gpus, "actor_num_cpus": model.actor_num_cpus}

    def describe(self) -> str:
        return "on Ray"


def _host_port(address: str) -> tuple[str, int]:
    """Host and port of `host:port`, `ray://host:port` or `auto` (the cluster `ray start` recorded)."""
    target = address
    if target == "auto":
        # Ray's own lookup (RAY_ADDRESS, then the ray_current_cluster file); private, so guarded.
        try:
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address("auto") or ""
        except Exception as exc:
            raise RayUnreachable(f"Ray address 'auto': no running Ray cluster found on this machine ({exc})") from exc
        if not target:
            raise RayUnreachable("Ray address 'auto': no running Ray cluster found on this machine")
    if "://" in target:
        target = target.split("://", 1)[1]
    target = target.split("/", 1)[0]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"Ray address {address!r} is not 'auto', 'local', 'host:port' or 'ray://host:port'")
    return host.strip("[]") or "127.0.0.1", int(port)


def wait_until_reachable(address: str, timeout_s: float) -> None:
    """Return once `address` accepts a TCP connection; raise RayUnreachable after `timeout_s`.

    Ray itself retries a dead address for minutes; a head that is starting up gets the whole budget,
    a host that refuses or does not resolve is retried every quarter second until then.
    """
    host, port = _host_port(address)
    deadline = time.monotonic() + timeout_s

    def connect() -> None:
        with socket.create_connection((host, port), timeout=min(2.0, max(deadline - time.monotonic(), 0.01))):
            pass

    try:
        Retrying(
            stop=stop_after_delay(timeout_s),
            wait=wait_fixed(0.25),
            retry=retry_if_exception_type(OSError),
            reraise=True,
        )(connect)
    except OSError as exc:
        resolved = f" ({host}:{port})" if address == "auto" else ""
        raise RayUnreachable(
            f"Ray cluster at {address!r}{resolved} did not accept a connection within {timeout_s:g} s ({exc}). "
            f"Start it, fix RAY_ADDRESS, or unset RAY_ADDRESS to run a local Ray in this step; "
            f"the wait is set by {CONNECT_TIMEOUT_ENV} or RayResource.connect_timeout_s."
        ) from exc
