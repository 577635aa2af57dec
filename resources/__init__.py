"""Dagster resources: where data lives, which Ray cluster runs the work, which models to load."""

from resources.depth_model import DepthModelResource
from resources.ray_cluster import RayResource
from resources.speech_model import SpeechModelResource
from resources.storage import StorageResource

__all__ = ["DepthModelResource", "RayResource", "SpeechModelResource", "StorageResource"]
