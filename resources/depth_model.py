"""Which depth model the `depth_maps` asset runs, and on what."""

import dataclasses
from pathlib import Path

import dagster as dg
import ray

from kinetics_assets.depth.model import DEFAULT_MODEL_ID, DepthModelConfig, DepthModelUnavailable, check_weights_available



class DepthModelResource(dg.ConfigurableResource):
    """Model id, revision and local folder honour the usual Hugging Face settings (HF_HOME,
    HF_HUB_OFFLINE); `local_path` (a `save_pretrained` folder) wins over `model_id`."""

    model_id: str = DEFAULT_MODEL_ID
    revision: str | None = None
    local_path: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 8
    input_short_side: int = 518
    actors: int | None = None
    """Model actors per depth step; default the step's share of the cluster's GPUs (GPUs divided by
    the `depth` pool's limit, at least one), else one CPU actor."""
    actor_num_cpus: float = 0.0
    """CPUs each model actor reserves; 0 so concurrent shards' actors cannot starve the CPU tasks."""
    allow_random_weights: bool = False
    """Demo only: when the weights cannot be had, run a small randomly initialised model instead,
    loudly, and record it in the table and the metadata. Never set this in production."""

    def resolve_model(self, fallback_folder: Path) -> tuple[DepthModelConfig, bool]:
        """The config to load, and whether it is the pre-trained model."""
        from kinetics_assets.depth.random_model import has_random_weights, save_random_depth_model

        config = DepthModelConfig(
            model_id=self.model_id,
            revision=self.revision,
            local_path=self.local_path,
            cache_dir=self.cache_dir,
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batch_size,
            input_short_side=self.input_short_side,
        )
        try:
            check_weights_available(config)
            if config.local_path and has_random_weights(config.local_path):
                return dataclasses.replace(config, model_id=f"RANDOM-WEIGHTS model at {config.local_path}"), False
            return config, True
        except DepthModelUnavailable:
            if not self.allow_random_weights:
                raise
        folder = save_random_depth_model(fallback_folder)
        stand_in = dataclasses.replace(
            config,
            model_id=f"RANDOM-WEIGHTS stand-in for {self.model_id} (not pre-trained)",
            revision=None,
            local_path=str(folder),
            cache_dir=None,
        )
        return stand_in, False

    def actor_layout(self, depth_steps_at_once: int = 1) -> tuple[int, float]:
        """(actors, GPUs per actor) for one depth step on the connected cluster: its share of the
        cluster's GPUs when `depth_steps_at_once` steps (the `depth` pool's limit) run together."""
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus and self.device in ("auto", "cuda"):
            return (self.actors or max(gpus // max(depth_steps_at_once, 1), 1)), 1.0
        return (self.actors or 1), 0.0
