"""Deployment settings read from the environment.

Partitions must be known when Dagster loads the code location, before any resource exists, so the
few settings that shape the asset graph (which release or manifest, where data lives) come from
environment variables. Everything that only shapes how a run executes lives in resources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "https://s3.amazonaws.com/kinetics/"
RELEASES = ("k400", "k600", "k700_2020")


class SettingsError(ValueError):
    """A setting has a value the platform cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    release: str
    """`k400`, `k600`, `k700_2020`, or `custom` when a manifest file is given."""
    manifest: Path | None
    base_url: str
    data_root: str
    lance_uri: str

    @property
    def annotations_url(self) -> str | None:
        if self.release == "custom":
            return os.environ.get("KINETICS_ANNOTATIONS_URL") or None
        folder = {"k400": "400", "k600": "600", "k700_2020": "700_2020"}[self.release]
        return os.environ.get("KINETICS_ANNOTATIONS_URL") or f"{self.base_url}{folder}/annotations/val.csv"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        manifest = env.get("KINETICS_MANIFEST") or None
        release = (env.get("KINETICS_RELEASE") or ("custom" if manifest else "k700_2020")).lower()
        if manifest:
            if release != "custom":
                raise SettingsError(
                    f"KINETICS_MANIFEST is set, so KINETICS_RELEASE must be unset or 'custom', not {release!r}"
                )
            manifest_path = Path(manifest).expanduser().resolve()
            if not manifest_path.is_file():
                raise SettingsError(f"KINETICS_MANIFEST={manifest!r}: no such file")
        else:
            manifest_path = None
            if release not in RELEASES:
                raise SettingsError(
                    f"KINETICS_RELEASE={release!r} is not one of {', '.join(RELEASES)} "
                    "(or set KINETICS_MANIFEST to a custom manifest file)"
                )
        base_url = env.get("KINETICS_BASE_URL") or DEFAULT_BASE_URL
        if not base_url.endswith("/"):
            base_url += "/"
        data_root = env.get("KINETICS_DATA_ROOT") or "data"
        if "://" not in data_root:
            data_root = str(Path(data_root).expanduser().resolve())
        lance_uri = env.get("KINETICS_LANCE_URI") or f"{data_root.rstrip('/')}/lance/{release}.lance"
        return cls(release, manifest_path, base_url, data_root, lance_uri)
