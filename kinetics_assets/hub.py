"""Where a model's weights come from: a `save_pretrained` folder, the Hugging Face cache, or the Hub.

One set of rules for every model the pipeline runs (depth, speech): `local_path` wins over the model
id; `cache_dir=None` leaves HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE in charge exactly as they are for
transformers; an unreachable Hub is found with one quick TCP connect, after which only the cache is
read (huggingface_hub would retry a dead endpoint for ~25 s per file); and missing weights raise an
error that names the model and says how to provide it.

This module imports neither dagster nor ray.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
T = TypeVar("T")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Seconds the Hub (or the proxy in front of it) has to accept a TCP connection before this process
# treats it as unreachable and uses the local cache only.
HUB_PROBE_TIMEOUT_S = float(os.environ.get("KINETICS_HUB_PROBE_TIMEOUT_S", "3"))
# A probe's answer is reused for this long, so the check and the load in one process probe once.
_HUB_PROBE_TTL_S = 300.0
_hub_probes: dict[str, tuple[float, str | None]] = {}
# transformers' loading is not thread-safe: two models loaded at once in one process failed with
# "Cannot copy out of meta tensor". Loads are rare and once per process, so they take turns.
_load_lock = threading.Lock()


@dataclass(frozen=True)
class WeightsSource:
    """The part of a model config that says where its weights are, and how to name it in errors."""

    kind: str  # "Depth model", "Speech model": the start of every message about it
    config_name: str  # the config class users set, named in the fix
    model_id: str
    revision: str | None = None
    local_path: str | os.PathLike[str] | None = None
    cache_dir: str | os.PathLike[str] | None = None


def resolve_device(device: str) -> torch.device:
    """The device for "auto" (cuda when available, else cpu), or for any torch device string."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device, *, config_name: str) -> torch.dtype:
    """The dtype for "auto" (float16 on cuda: half the memory and time of float32; float32 on cpu), or the named one."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"{config_name}.dtype={dtype!r} is not one of 'auto', {sorted(_DTYPES)}") from None


def _is_unreachable_error(exc: BaseException) -> bool:
    """True for the error transformers raises when weights are not cached and the Hub cannot be used.

    transformers 5.23 (`utils/hub.py: cached_files`) wraps huggingface_hub's LocalEntryNotFoundError
    (offline mode or no connection, nothing cached) and HfHubHTTPError (connection-level HTTP failure)
    in a plain OSError, chaining the original as __cause__. A wrong repo id or revision chains
    RepositoryNotFoundError / RevisionNotFoundError instead and is left alone: that is a setting error.
    """
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, LocalEntryNotFoundError):
            return True
        if isinstance(cur, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)):
            return False
        if isinstance(cur, HfHubHTTPError):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def hub_endpoint() -> str:
    """The Hub URL huggingface_hub uses (HF_ENDPOINT, read by it at import)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def _probe_target(endpoint: str) -> tuple[str, int, str]:
    """(host, port, what) a TCP connect must reach for the Hub to answer: the proxy, when one applies."""
    url = urllib.parse.urlsplit(endpoint)
    scheme = url.scheme or "https"
    host = url.hostname or ""
    port = url.port or (443 if scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        purl = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if purl.hostname:
            return purl.hostname, purl.port or 80, f"proxy {purl.hostname}:{purl.port or 80}"
    return host, port, f"{host}:{port}"


def hub_unreachable_reason(timeout_s: float | None = None) -> str | None:
    """None if the Hub endpoint accepts a TCP connection within `timeout_s`, else why not, in a few words.

    One quick connect (name lookup included, bounded by a thread since getaddrinfo has no timeout)
    instead of letting every file request retry for ~25 s. The answer is kept for a few minutes.
    """
    endpoint = hub_endpoint()
    timeout = HUB_PROBE_TIMEOUT_S if timeout_s is None else timeout_s
    cached = _hub_probes.get(endpoint)
    if cached is not None and time.monotonic() - cached[0] < _HUB_PROBE_TTL_S:
        return cached[1]
    host, port, what = _probe_target(endpoint)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(f"{what}: {exc.strerror or exc}")

    worker = threading.Thread(target=connect, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    reason = outcome[0] if outcome else f"{what}: no answer within {timeout:g} s"
    _hub_probes[endpoint] = (time.monotonic(), reason)
    if reason is not None:
        # One line per probe, since the retries it saves would have printed a dozen.
        log.warning("Hugging Face Hub at %s is unreachable (%s): using only the local model cache", endpoint, reason)
    return reason


def _hub_mode() -> tuple[dict, str | None]:
    """from_pretrained kwargs and, when the Hub is unreachable, why: then only the local cache is read."""
    from huggingface_hub import is_offline_mode

    if is_offline_mode():
        return {}, None
    reason = hub_unreachable_reason()
    if reason is None:
        return {}, None
    return {"local_files_only": True}, reason


def _not_cached_reason(unreachable: str | None) -> str:
    if unreachable is None:
        return "no cached copy was found and the Hugging Face Hub could not be used"
    return f"no cached copy was found and the Hugging Face Hub at {hub_endpoint()} is unreachable ({unreachable})"


def unavailable_message(source: WeightsSource, reason: str) -> str:
    """What is missing, where it was looked for, and the two ways to provide it."""
    from huggingface_hub import is_offline_mode

    rev = source.revision or "main"
    where = f"cache_dir={source.cache_dir}" if source.cache_dir else "the Hugging Face cache (HF_HOME / HF_HUB_CACHE)"
    offline = " HF_HUB_OFFLINE is set, so the Hub was not asked." if is_offline_mode() else ""
    return (
        f"{source.kind} {source.model_id!r} (revision {rev!r}) is not available: {reason}.{offline} "
        f"Looked in {where}. To provide the weights: on a machine with internet access run "
        f"`hf download {source.model_id}` (older clients: `huggingface-cli download {source.model_id}`)"
        f"{f' --revision {source.revision}' if source.revision else ''} and copy its cache folder here, "
        "pointing HF_HOME (or HF_HUB_CACHE) at it; or save the model with `save_pretrained` and set "
        f"{source.config_name}.local_path to that folder."
    )


def _local_folder(source: WeightsSource, local_path: str | os.PathLike[str], unavailable: type[Exception]) -> str:
    folder = Path(local_path)
    if not (folder / "config.json").is_file():
        raise unavailable(
            unavailable_message(source, f"local_path {str(folder)!r} has no config.json (not a save_pretrained folder)")
        )
    return str(folder)


def _hub_kwargs(source: WeightsSource) -> dict:
    kwargs: dict = {"revision": source.revision}
    if source.cache_dir is not None:
        kwargs["cache_dir"] = str(source.cache_dir)
    return kwargs


def from_pretrained(source: WeightsSource, load: Callable[..., T], unavailable: type[Exception], **kwargs: object) -> T:
    """`load(name_or_folder, **kwargs)` (a `from_pretrained`) under the rules above; weights that are
    neither local nor reachable raise `unavailable` naming the model, chaining transformers' error.
    """
    if source.local_path is not None:
        folder = _local_folder(source, source.local_path, unavailable)
        with _load_lock:
            return load(folder, **kwargs)
    hub_kwargs, unreachable = _hub_mode()
    try:
        with _load_lock:
            return load(source.model_id, **_hub_kwargs(source), **hub_kwargs, **kwargs)
    except OSError as exc:
        if unreachable is not None or _is_unreachable_error(exc):
            raise unavailable(unavailable_message(source, _not_cached_reason(unreachable))) from exc
        raise


def check_available(source: WeightsSource, unavailable: type[Exception]) -> None:
    """Raise `unavailable` unless the model can be loaded, reading only its config.json (cache first,
    then the Hub), so a step can decide what to do before it starts model actors.
    """
    from transformers import AutoConfig

    if source.local_path is not None:
        _local_folder(source, source.local_path, unavailable)
        return
    from_pretrained(source, AutoConfig.from_pretrained, unavailable)


def loaded_revision(source: WeightsSource) -> str:
    """The revision to record: "local" for a folder, else the cached commit, else what was asked for."""
    if source.local_path is not None:
        return "local"
    return cached_commit_hash(source) or source.revision or "main"


def cached_commit_hash(source: WeightsSource) -> str | None:
    """The commit the Hub cache resolves `source.revision` to (the snapshot folder's name), if cached.

    transformers 5.23 no longer records `_commit_hash` on the loaded config, so ask the cache the same
    question from_pretrained asked: which snapshot holds config.json for this repo and revision.
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(
            source.model_id,
            "config.json",
            cache_dir=str(source.cache_dir) if source.cache_dir is not None else None,
            revision=source.revision,
        )
    except Exception:  # noqa: BLE001 - an unusual revision string or cache layout only costs us the hash
        return None
    if isinstance(found, str):
        snapshot = Path(found).parent.name
        if len(snapshot) == _COMMIT_HASH_LENGTH and all(c in "0123456789abcdef" for c in snapshot):
            return snapshot
    return None


_COMMIT_HASH_LENGTH = 40  # a git SHA-1 in hex: the name of a Hub snapshot folder

RANDOM_WEIGHTS_KEY = "random_weights"
"""Set in the config.json of a randomly initialised stand-in, so whoever loads the folder can tell."""


def mark_random_weights(config: object) -> None:
    """Record on a model config (before `save_pretrained`) that its weights are random."""
    setattr(config, RANDOM_WEIGHTS_KEY, True)


def has_random_weights(folder: str | os.PathLike[str]) -> bool:
    """True for a `save_pretrained` folder whose config.json says its weights are random."""
    config = Path(folder) / "config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get(RANDOM_WEIGHTS_KEY))


def saved_once(folder: str | os.PathLike[str], save: Callable[[Path], object]) -> Path:
    """`save(folder)` unless a model is already saved there; the folder either way."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        save(folder)
    return folder
