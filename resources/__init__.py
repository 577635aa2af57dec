"""Dagster resources: where data lives, where the per-clip work runs (a Ray cluster or this
process), which models to load.
"""

from resources.depth_model import DepthModelResource
from resources.embedding_model import EmbeddingModelResource
from resources.execution import ClipExecution, InProcessExecution
from resources.ray_cluster import RayResource
from resources.speech_model import SpeechModelResource
from resources.storage import StorageResource

__all__ = [
    "ClipExecution",
    "DepthModelResource",
    "EmbeddingModelResource",
    "InProcessExecution",
    "RayResource",
    "SpeechModelResource",
    "StorageResource",
]
