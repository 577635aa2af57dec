"""The options of the Ray stage executor, in a module that imports no Ray: the assets' run configs
and resources build them when the definitions are built, which must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class RayStageOptions:
    actors: int = 1
    """Model actors of the run (a stage with no model has none)."""
    actor_num_cpus: float = 0.0
    """CPUs a model actor holds for its whole life. 0 (Ray's default for actors) so that actors of
    several shards never hold every CPU and starve the prepare and finish tasks they wait on."""
    actor_num_gpus: float | None = None
    """None: the stage's declaration (`Resources.gpus`), by default one GPU per actor when the
    cluster has GPUs, else none."""
    torch_threads: int | None = None
    max_in_flight: int | None = None
    """Videos between prepare and finish at once; bounds memory. None: the stage's default."""
