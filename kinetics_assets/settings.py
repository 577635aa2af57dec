"""Deployment settings read from the environment.

Partitions must be known when Dagster builds the definitions, before any resource exists, so the
few settings that shape the asset graph (which release or manifest, where data lives, where per-clip
work runs) come from environment variables, read when the definitions are built (not when a module
is imported). Everything that only shapes how a run executes lives in resources.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_BASE_URL = "https://s3.amazonaws.com/kinetics/"
RELEASES = ("k400", "k600", "k700_2020")
# A run's fixed cost (run and step processes, Ray connection, model load: ~30-80 s) spread over this
# many shards is ~1-3 s each, and 16 K700 shards (~770 clips) keep a 128-core cluster's window full;
# a failed run still re-does at most this many shards (see BENCHMARKS.md, "Whole-split backfill").
DEFAULT_PARTITIONS_PER_RUN = 16
RunExecutor = Literal["in_process", "multiprocess"]
RUN_EXECUTORS: tuple[RunExecutor, ...] = get_args(RunExecutor)
Execution = Literal["ray", "in_process"]
"""Where the shard assets run their per-clip work: on Ray (tasks and model actors), or one clip
after another in the step's own process (no Ray: small runs, tests)."""
EXECUTIONS: tuple[Execution, ...] = get_args(Execution)


class SettingsError(ValueError):
    """A setting has a value the platform cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    release: str
    """`k400`, `k600`, `k700_2020`, or `custom` when a manifest file is given."""
    manifest: Path | None
    base_url: str
    data_root: str
    """A local folder or an object-storage URI (`s3://bucket/prefix`) for the raw archives."""
    lance_uri: str
    cache_dir: str = ""
    """Local folder where archives kept on object storage are staged while being read or written."""
    partitions_per_run: int | None = DEFAULT_PARTITIONS_PER_RUN
    """How many partitions (shards) one backfill run materializes: the assets' backfill policy.
    None (`all`): every selected partition in one run, Dagster's single-run policy, which
    `dagster asset materialize --partition-range` requires."""
    run_executor: RunExecutor = "in_process"
    """How a run executes its steps: `in_process` (the steps of a run, a chain, one after another in
    the run's own process) or `multiprocess` (Dagster's default: a new process per step)."""
    execution: Execution = "ray"
    """Where a step runs its per-clip work: `ray` or `in_process` (`KINETICS_EXECUTION`)."""

    @property
    def annotations_url(self) -> str | None:
        if self.release == "custom":
            return os.environ.get("KINETICS_ANNOTATIONS_URL") or None
        folder = {"k400": "400", "k600": "600", "k700_2020": "700_2020"}[self.release]
        return os.environ.get("KINETICS_ANNOTATIONS_URL") or f"{self.base_url}{folder}/annotations/val.csv"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
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
        cache_dir = env.get("KINETICS_CACHE_DIR") or (f"{data_root}/cache" if "://" not in data_root else "data/cache")
        cache_dir = str(Path(cache_dir).expanduser().resolve())
        per_run = (env.get("KINETICS_PARTITIONS_PER_RUN") or str(DEFAULT_PARTITIONS_PER_RUN)).strip().lower()
        if per_run != "all" and (not per_run.isdigit() or int(per_run) < 1):
            raise SettingsError(
                f"KINETICS_PARTITIONS_PER_RUN={per_run!r} must be a whole number of at least 1, or 'all'"
            )
        executor = (env.get("KINETICS_RUN_EXECUTOR") or "in_process").strip().lower()
        if executor not in RUN_EXECUTORS:
            raise SettingsError(f"KINETICS_RUN_EXECUTOR={executor!r} is not one of {', '.join(RUN_EXECUTORS)}")
        execution = (env.get("KINETICS_EXECUTION") or "ray").strip().lower()
        if execution not in EXECUTIONS:
            raise SettingsError(f"KINETICS_EXECUTION={execution!r} is not one of {', '.join(EXECUTIONS)}")
        return cls(
            release,
            manifest_path,
            base_url,
            data_root,
            lance_uri,
            cache_dir,
            None if per_run == "all" else int(per_run),
            executor,
            execution,
        )


def storage_options_from_env(env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """Object-storage options (Lance's `storage_options` keys) from `KINETICS_STORAGE_OPTIONS`, a JSON
    object. Read at the moment of use and never kept in settings, resources or metadata: it may hold
    credentials. Unset means Lance and pyarrow find credentials in the AWS_* variables themselves.
    """
    env = os.environ if env is None else env
    raw = env.get("KINETICS_STORAGE_OPTIONS")
    if not raw:
        return None
    try:
        options = json.loads(raw)
    except ValueError as exc:
        # The value may hold secrets: name the variable and the position, never echo the text.
        position = getattr(exc, "pos", "?")
        raise SettingsError(f"KINETICS_STORAGE_OPTIONS is not valid JSON (at character {position})") from None
    if not isinstance(options, dict):
        raise SettingsError("KINETICS_STORAGE_OPTIONS must be a JSON object of option names to values")
    # Lance takes strings only: JSON true / 30 become "true" / "30".
    return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in options.items()}
