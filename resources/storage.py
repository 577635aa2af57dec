"""Where archives and the Lance table live, local or on object storage."""


import json
import os

import dagster as dg

from kinetics_assets.settings import Settings


class StorageResource(dg.ConfigurableResource):
    """Data locations. Credentials for object storage come from the environment
    (`KINETICS_STORAGE_OPTIONS` as JSON, or the usual AWS_* variables) and are never logged."""

    data_root: str
    lance_uri: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "StorageResource":
        return cls(data_root=settings.data_root, lance_uri=settings.lance_uri)

    @property
    def storage_options(self) -> dict[str, str] | None:
        raw = os.environ.get("KINETICS_STORAGE_OPTIONS")
        return json.loads(raw) if raw else None

    def shard_dir(self, shard_key: str) -> str:
        return f"{self.data_root.rstrip('/')}/raw/{shard_key}"
