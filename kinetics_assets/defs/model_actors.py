"""What the model assets (depth_maps, transcripts) do before their work: resolve the model, say so
loudly when it is the demo's random stand-in, and lay its actors out on the cluster's GPUs."""

from pathlib import Path
from typing import Any

import dagster as dg

from resources.hub_model import HubModelResource


def pool_limit(instance: dg.DagsterInstance, pool: str) -> int:
    """How many steps of `pool` may run at once in this instance (its own limit, else the default)."""
    for limit in instance.event_log_storage.get_pool_limits():
        if limit.name == pool:
            return max(limit.limit, 1)
    return max(instance.get_concurrency_config().pool_config.default_pool_limit or 1, 1)


def model_for_step(
    context: dg.AssetExecutionContext,
    model: HubModelResource,
    fallback_folder: Path,
    *,
    pool: str,
    what: str,
    column: str,
) -> tuple[Any, bool, dict[str, Any]]:
    """(engine config, pre-trained?, actor layout: actors, actor_num_gpus, actor_num_cpus) for this step.
    `what` the step writes is named in the warning about random weights, with the `column` recording it."""
    config, pretrained = model.resolve_model(fallback_folder)  # type: ignore[attr-defined]
    if not pretrained:
        context.log.warning(
            f"!!! The weights of {model.model_id} could not be found or downloaded: using a RANDOMLY INITIALISED "
            f"model. The {what} written is NOT meaningful; the table's {column} column and this "
            "materialization's metadata say so. !!!"
        )
    actors, gpus = model.actor_layout(steps_at_once=pool_limit(context.instance, pool))
    shards = len(context.partition_keys)
    context.log.info(f"{what} for {shards} shard(s) on {actors} model actor(s) ({gpus:g} GPU each)")
    return config, pretrained, {"actors": actors, "actor_num_gpus": gpus, "actor_num_cpus": model.actor_num_cpus}
