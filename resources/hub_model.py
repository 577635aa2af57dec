"""What the model resources share: where the weights come from, the demo's random stand-in, and how
many model actors a step runs on the connected Ray cluster.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

import dagster as dg

if TYPE_CHECKING:
    import os
    from collections.abc import Callable
    from pathlib import Path
    from typing import Protocol

    from _typeshed import DataclassInstance

    class WeightsConfig(DataclassInstance, Protocol):
        """An engine's model config (`DepthModelConfig`, `SpeechModelConfig`): a dataclass with these."""

        @property
        def local_path(self) -> str | os.PathLike[str] | None: ...


C = TypeVar("C", bound="WeightsConfig")


class HubModelResource(dg.ConfigurableResource):
    """Model id, revision and local folder honour the usual Hugging Face settings (HF_HOME,
    HF_HUB_OFFLINE); `local_path` (a `save_pretrained` folder) wins over `model_id`. Subclasses name
    the model (`model_id` and its default) and build its engine config.
    """

    model_id: str
    revision: str | None = None
    local_path: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 8
    actors: int | None = None
    """Model actors per step; default the step's share of the cluster's GPUs (GPUs divided by the
    step's pool limit, at least one), else one CPU actor."""
    actor_num_cpus: float = 0.0
    """CPUs each model actor reserves; 0 so concurrent shards' actors cannot starve the CPU tasks."""
    allow_random_weights: bool = False
    """Demo only: when the weights cannot be had, run a small randomly initialised model instead,
    loudly, and record it in the table and the metadata. Never set this in production."""

    def _weights_fields(self) -> dict[str, Any]:
        """The engine config's fields this base holds."""
        return {
            name: getattr(self, name)
            for name in ("model_id", "revision", "local_path", "cache_dir", "device", "dtype", "batch_size")
        }

    def _resolve(
        self,
        config: C,
        *,
        check: Callable[[C], None],
        unavailable: type[Exception],
        save_random: Callable[[Path], Path],
        fallback_folder: Path,
    ) -> tuple[C, bool]:
        """`config` and True when its weights are there and pre-trained; a saved random model is
        False. Missing weights raise `unavailable`, or with `allow_random_weights` give the random
        stand-in saved in `fallback_folder`.
        """
        from kinetics_assets.hub import has_random_weights  # torch: loaded by the step, not the code location

        try:
            check(config)
        except unavailable:
            if not self.allow_random_weights:
                raise
        else:
            local_path = config.local_path
            if local_path and has_random_weights(local_path):
                return dataclasses.replace(config, model_id=f"RANDOM-WEIGHTS model at {local_path}"), False
            return config, True
        folder = save_random(fallback_folder)
        stand_in = dataclasses.replace(
            config,
            model_id=f"RANDOM-WEIGHTS stand-in for {self.model_id} (not pre-trained)",
            revision=None,
            local_path=str(folder),
            cache_dir=None,
        )
        return stand_in, False

    def actor_layout(self, steps_at_once: int = 1) -> tuple[int, float]:
        """(actors, GPUs per actor) for one step on the connected cluster: its share of the cluster's
        GPUs when `steps_at_once` steps (the limit of the step's pool) run together.
        """
        import ray  # the connected cluster's: loaded by the step, not the code location

        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus and self.device in ("auto", "cuda"):
            return (self.actors or max(gpus // max(steps_at_once, 1), 1)), 1.0
        return (self.actors or 1), 0.0
