"""What the model assets (depth_maps, transcripts) do before their work: resolve the model, say so
loudly when it is the demo's random stand-in, and lay its actors out on the cluster's GPUs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import dagster as dg

    from resources.execution import ClipExecution
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
    execution: ClipExecution,
    pool: str,
    what: str,
) -> tuple[Any, bool, dict[str, Any]]:
    """(engine config, pre-trained?, actor layout: actors, actor_num_gpus, actor_num_cpus) for this step;
    no actors when the step runs in process. `what` the step writes is named in the warning about
    random weights.
    """
    config, pretrained = model.resolve_model(fallback_folder)  # type: ignore[attr-defined]
    if not pretrained:
        context.log.warning(
            "!!! The weights of %s could not be found or downloaded: using a RANDOMLY INITIALISED model. "
            "The %s written is NOT meaningful; the table's *_pretrained column and this materialization's "
            "metadata say so. !!!",
            model.model_id,
            what,
        )
    layout = execution.model_layout(model, steps_at_once=pool_limit(context.instance, pool))
    shards = len(context.partition_keys)
    if layout:
        context.log.info(
            "%s for %d shard(s) on %d model actor(s) (%g GPU each)",
            what,
            shards,
            layout["actors"],
            layout["actor_num_gpus"],
        )
    else:
        context.log.info("%s for %d shard(s) %s", what, shards, execution.describe())
    return config, pretrained, layout
