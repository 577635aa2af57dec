"""The `kinetics_assets` code location."""

from __future__ import annotations

import os

import dagster as dg

from kinetics_assets.assets import raw_archives, transcoded_videos
from kinetics_assets.partitions import SETTINGS

__all__ = ["ASSETS", "RESOURCES", "SETTINGS", "defs"]
from resources import RayResource, StorageResource


def ray_resource_from_env() -> RayResource:
    cpus = os.environ.get("KINETICS_RAY_NUM_CPUS")
    return RayResource(
        address=os.environ.get("RAY_ADDRESS") or None,
        num_cpus=int(cpus) if cpus else None,
    )


ASSETS = [raw_archives, transcoded_videos]
RESOURCES = {
    "storage": StorageResource.from_settings(SETTINGS),
    "ray_cluster": ray_resource_from_env(),
}

defs = dg.Definitions(assets=ASSETS, resources=RESOURCES)
