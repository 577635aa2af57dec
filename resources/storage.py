"""Where archives and the Lance table live, local or on object storage."""

from pathlib import Path

import dagster as dg

from kinetics_assets.ingest.object_store import is_remote
from kinetics_assets.settings import Settings, storage_options_from_env


class StorageResource(dg.ConfigurableResource):
    """Data locations. Credentials for object storage come from the environment
    (`KINETICS_STORAGE_OPTIONS` as JSON, or the usual AWS_* variables) at the moment of use, so they
    are never part of this resource's config, Dagster's metadata or its logs.
    """

    data_root: str
    """A local folder or `s3://bucket/prefix`."""
    lance_uri: str
    cache_dir: str | None = None
    """Local staging folder for archives on object storage; default `<data_root>/cache` for a local
    data root, `./data/cache` otherwise."""

    @classmethod
    def from_settings(cls, settings: Settings) -> "StorageResource":
        return cls(data_root=settings.data_root, lance_uri=settings.lance_uri, cache_dir=settings.cache_dir or None)

    @property
    def storage_options(self) -> dict[str, str] | None:
        return storage_options_from_env()

    @property
    def is_remote(self) -> bool:
        return is_remote(self.data_root)

    @property
    def local_cache(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir)
        return Path("data/cache").resolve() if self.is_remote else Path(self.data_root) / "cache"

    @property
    def local_root(self) -> Path:
        """A local folder for small files that need not be shared (annotations, generated models):
        the data root itself, or the cache when the data root is on object storage.
        """
        return self.local_cache if self.is_remote else Path(self.data_root)
