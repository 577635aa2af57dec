"""What the depth step asks of whoever runs its videos: a stream of depth rows for many jobs.

The step is handed an executor (`DepthExecutor`) rather than importing one, so its own logic (skip
rules, one commit per shard, failure isolation) runs the same on Ray (`distributed/depth.py`) and in
the calling process (`steps/in_process_depth.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from kinetics_assets.depth.model import DepthModelConfig
    from kinetics_assets.media.depth_codec import DepthEncoding
    from kinetics_assets.media.sampling import FrameSampling
    from kinetics_assets.steps.depth_video import DepthJob


@dataclass(frozen=True, kw_only=True)
class DepthRequest:
    """Depth for the videos of `jobs`, read from the table at `uri` as of `version`, made with these
    settings.
    """

    jobs: Sequence[DepthJob]
    uri: str
    version: int
    storage_options: dict | None
    model: DepthModelConfig
    sampling: FrameSampling
    encoding: DepthEncoding


class DepthStream(Protocol):
    """Depth rows (one per job, `depth_status` ok or failed), yielded as each video finishes.

    The model loads once, when iteration begins; a model that cannot be loaded raises from the
    iteration (it would fail every video). Once the first row is out: `model` (id, revision, device,
    dtype) and `model_load_s` (the time spent starting and loading the model).
    """

    model: dict
    model_load_s: float

    def __iter__(self) -> Iterator[dict]: ...


class DepthExecutor(Protocol):
    def stream(self, request: DepthRequest) -> DepthStream: ...
