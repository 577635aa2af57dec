"""The options of the Ray executors, in a module that imports no Ray: the assets' run configs take
their fields and defaults from these when the definitions are built, which must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RayDepthOptions:
    actors: int = 1
    actor_num_cpus: float = 0.0
    """CPUs a model actor holds for its whole life. 0 (Ray's default for actors) so that actors of
    several shards never hold every CPU and starve the decode and encode tasks they wait on."""
    actor_num_gpus: float = 0.0
    torch_threads: int | None = None
    max_in_flight: int = 4
    """Videos between decode and encode at once; bounds memory (frames are large)."""
    task_num_cpus: int = 1
    """CPUs each decode and encode task reserves; its codec runs exactly that many threads, so the
    tasks Ray packs onto a node never run more codec threads than the node has cores."""

    def __post_init__(self) -> None:
        if self.task_num_cpus < 1:
            raise ValueError(f"RayDepthOptions.task_num_cpus must be >= 1, got {self.task_num_cpus}")


@dataclass(frozen=True)
class RayTranscriptOptions:
    actors: int = 1
    actor_num_cpus: float = 0.0
    """CPUs a model actor holds for its whole life; 0 so actors never starve the decode tasks."""
    actor_num_gpus: float | None = None
    """None: one GPU per actor when the cluster has GPUs, else none."""
    torch_threads: int | None = None
    max_in_flight: int = 32
    """Videos between decode and transcript at once (a 10 s clip's audio is 640 KB)."""
