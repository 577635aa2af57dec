"""Dagster resources: where data lives, which Ray cluster runs the work, which depth model to load."""

from resources.depth_model import DepthModelResource
from resources.ray_cluster import RayResource
from resources.storage import StorageResource

__all__ = ["DepthModelResource", "RayResource", "StorageResource"]
