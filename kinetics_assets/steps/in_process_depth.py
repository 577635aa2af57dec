"""The depth step's executor without Ray: the model is loaded once in the calling process and each
video is decoded, run and encoded there, by the same per-video functions the Ray tasks run.

For tests of the step's own logic and for small runs; one video at a time, batched inside the model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import lance

from kinetics_assets.depth.model import DepthEstimator, DepthModelConfig
from kinetics_assets.media.depth_codec import DepthEncoding
from kinetics_assets.media.frames import FrameSampling
from kinetics_assets.steps.depth_video import (
    DepthJob,
    decode_video,
    depth_columns,
    depth_row,
    describe_model,
    provenance,
    require_frames,
)
from kinetics_assets.table.video_table import open_table


@dataclass(frozen=True, kw_only=True)
class InProcessDepthExecutor:
    def stream(self, jobs: Sequence[DepthJob], *, uri: str, version: int, storage_options: dict | None,
               model: DepthModelConfig, sampling: FrameSampling, encoding: DepthEncoding) -> InProcessDepthStream:
        return InProcessDepthStream(jobs, uri=uri, version=version, storage_options=storage_options, model=model,
                                    sampling=sampling, encoding=encoding)


class InProcessDepthStream:
    """`steps.depth_stream.DepthStream` in the calling process."""

    def __init__(self, jobs: Sequence[DepthJob], *, uri: str, version: int, storage_options: dict | None,
                 model: DepthModelConfig, sampling: FrameSampling, encoding: DepthEncoding) -> None:
        self._jobs = jobs
        self._table = (uri, version, storage_options)
        self._config, self._sampling, self._encoding = model, sampling, encoding
        self.model: dict = {}
        self.model_load_s = 0.0

    def __iter__(self) -> Iterator[dict]:
        started = time.monotonic()
        estimator = DepthEstimator(self._config)
        self.model = describe_model(estimator)
        self.model_load_s = time.monotonic() - started
        made_by = provenance(self._sampling, self.model)
        uri, version, storage_options = self._table
        ds = open_table(uri, storage_options, version=version)
        for job in self._jobs:
            yield self._video(ds, estimator, job, made_by)

    def _video(self, ds: lance.LanceDataset, estimator: DepthEstimator, job: DepthJob, made_by: dict) -> dict:
        try:
            video, frames = decode_video(ds, job, self._sampling)
            require_frames(video)
            columns = depth_columns(estimator.predict(frames), video.timestamps, self._encoding)
        except Exception as exc:  # this video fails alone, as on Ray
            return depth_row(job, made_by, error=exc)
        return depth_row(job, made_by, columns=columns)
