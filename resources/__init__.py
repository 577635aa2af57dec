"""Dagster resources: where data lives, which Ray cluster runs the work, which depth model to load."""

from resources.ray_cluster import RayResource
from resources.storage import StorageResource

__all__ = ["RayResource", "StorageResource"]
