"""The one asset factory of the column stages: a stage's declaration in, its partitioned asset out,
with its run config, checks, pool, model resource, metadata and (optionally) a preview picture.

The asset's body is the same for every stage: resolve the model (loudly when it is the demo's
random stand-in), build the stage from the run config, run the shard loop through the `execution`
resource's executor, and record each shard for its own partition (`recording`).
"""

import base64
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from kinetics_assets.defs.model_actors import model_for_step
from kinetics_assets.defs.recording import ShardRecord, collect, finish_run, markdown_table
from kinetics_assets.distributed.options import RayStageOptions

if TYPE_CHECKING:
    from kinetics_assets.defs.engine_config import RunConfig
    from kinetics_assets.defs.partitions import ShardAssets
    from kinetics_assets.stages import ColumnStage, StageShardResult
    from kinetics_assets.steps.checks import CheckSpec

StageFactory = Callable[[Any, Any, bool], "ColumnStage[Any, Any, Any, Any]"]
"""(run config, resolved model config or None, pre-trained?) -> the stage; imports the engines."""
Preview = Callable[[str, "dict[str, str] | None", int, str], "bytes | None"]
"""(lance uri, storage options, version, shard) -> a PNG of the shard, for its metadata."""


@dataclass(frozen=True, kw_only=True)
class ColumnAsset:
    """What makes a column stage an asset; everything else is the same for every stage."""

    name: str
    description: str
    checks: Sequence["CheckSpec"]
    kinds: frozenset[str]
    config: type["RunConfig"]
    """Its run config: `force` and `max_in_flight` at least."""
    stage: StageFactory
    metadata: Callable[[Any, Any, Any], dict[str, Any]]
    """(shard result, stage, run config) -> the stage's own metadata, beside what every stage records."""
    pool: str | None = None
    """The Dagster pool that bounds how many of its steps run at once (a model stage's GPUs)."""
    model_resource: str | None = None
    """The resource key of its model (a `HubModelResource`); None for a stage with no model."""
    random_model: str = ""
    """The folder (under the storage root's models/) of the demo's random stand-in."""
    preview: Preview | None = None


def build_column_asset(shard_assets: "ShardAssets", spec: ColumnAsset) -> dg.AssetsDefinition:
    resource_keys = {"storage", "execution", *([spec.model_resource] if spec.model_resource else [])}

    def body(context: dg.AssetExecutionContext, config: Any) -> Iterator[Any]:  # noqa: ANN401 - its type is set below
        from kinetics_assets.stages import run_column_stage  # Lance and the engines: loaded by the step

        storage, execution = context.resources.storage, context.resources.execution
        shards = [shard_assets.shard(key).key for key in context.partition_keys]
        model_config, pretrained, layout = None, True, dict[str, Any]()
        if spec.model_resource:
            model_config, pretrained, layout = model_for_step(
                context,
                getattr(context.resources, spec.model_resource),
                storage.local_root / "models" / spec.random_model,
                execution=execution,
                pool=spec.pool or spec.name,
                what=spec.name,
            )
        stage = spec.stage(config, model_config, pretrained)
        options = RayStageOptions(max_in_flight=config.max_in_flight, **layout)
        results = run_column_stage(
            stage,
            shards,
            lance_uri=storage.lance_uri,
            storage_options=storage.storage_options,
            executor=execution.stage_executor(options),
            skip_committed=not config.force,
            log=context.log.info,
        )
        started = time.monotonic()

        def record(result: "StageShardResult[Any]") -> ShardRecord:
            metadata = _common_metadata(result, stage, storage.lance_uri) | spec.metadata(result, stage, config)
            if spec.preview is not None and (
                png := spec.preview(storage.lance_uri, storage.storage_options, result.version, result.shard)
            ):
                encoded = base64.b64encode(png).decode()
                metadata["preview"] = dg.MetadataValue.md(f"![the shard at a glance](data:image/png;base64,{encoded})")
            return ShardRecord(partition=result.shard, metadata=metadata, verdicts=result.checks)

        done, failed = collect(context, results, record)
        context.log.info("%s step: %.1f s for %d shard(s)", spec.name, time.monotonic() - started, len(shards))
        yield from finish_run(context, checks=spec.checks, done=done, failed=failed)

    body.__annotations__["config"] = spec.config
    body.__name__ = spec.name
    return shard_assets.asset(
        checks=spec.checks,
        deps=["transcoded_videos"],
        kinds=spec.kinds,
        pool=spec.pool,
        uses_ray=True,
        description=spec.description,
        required_resource_keys=resource_keys,
    )(body)


def _common_metadata(
    result: "StageShardResult[Any]", stage: "ColumnStage[Any, Any, Any, Any]", lance_uri: str
) -> dict[str, Any]:
    """What every column stage records for a shard: where, which version, what made it, what failed."""
    prefix = stage.row_type.prefix
    failures = [{"video_id": f.video_id, f"{prefix}_error": f.error} for f in result.failures]
    metadata: dict[str, Any] = {
        "lance_uri": lance_uri,
        "lance_version": result.version,
        "unchanged": result.unchanged,
        "failures": dg.MetadataValue.md(markdown_table(failures, ["video_id", f"{prefix}_error"])),
        "seconds": round(result.seconds, 2),
    }
    if stage.uses_model:
        model = result.model
        metadata |= {
            "model_load_s": round(result.model_load_s, 2),
            "model_id": model.model_id if model else "",
            "model_revision": model.revision if model else "",
            "pretrained_weights": stage.pretrained,
            "device": model.device if model else "",
            "dtype": model.dtype if model else "",
        }
    return metadata
