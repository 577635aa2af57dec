"""The depth step's executor without Ray: the model is loaded once in the calling process and each
video is decoded, run and encoded there, by the same per-video functions the Ray tasks run.

For tests of the step's own logic and for small runs; one video at a time, batched inside the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kinetics_assets.depth.model import DepthEstimator
from kinetics_assets.steps import depth_video as video
from kinetics_assets.table import open_table

if TYPE_CHECKING:
    from collections.abc import Iterator

    import lance

    from kinetics_assets.steps.depth_stream import DepthRequest


@dataclass(frozen=True, kw_only=True)
class InProcessDepthExecutor:
    def stream(self, request: DepthRequest) -> InProcessDepthStream:
        return InProcessDepthStream(request)


class InProcessDepthStream:
    """`steps.depth_stream.DepthStream` in the calling process."""

    def __init__(self, request: DepthRequest) -> None:
        self._request = request
        self.model: dict = {}
        self.model_load_s = 0.0

    def __iter__(self) -> Iterator[dict]:
        request, started = self._request, time.monotonic()
        estimator = DepthEstimator(request.model)
        self.model = video.describe_model(estimator)
        self.model_load_s = time.monotonic() - started
        made_by = video.provenance(request.sampling, self.model)
        ds = open_table(request.uri, request.storage_options, version=request.version)
        for job in request.jobs:
            yield self._video(ds, estimator, job, made_by)

    def _video(self, ds: lance.LanceDataset, estimator: DepthEstimator, job: video.DepthJob, made_by: dict) -> dict:
        try:
            decoded, frames = video.decode_video(ds, job, self._request.sampling)
            video.require_frames(decoded)
            columns = video.depth_columns(estimator.predict(frames), decoded.timestamps, self._request.encoding)
        except Exception as exc:  # noqa: BLE001 - this video fails alone, recorded in its row, as on Ray
            return video.depth_row(job, made_by, error=exc)
        return video.depth_row(job, made_by, columns=columns)
