"""Files on S3-compatible object storage, through pyarrow's S3 filesystem (no boto3 at run time).

One set of options serves both Lance and the archives: the option names are Lance's (object_store
crate) `storage_options` keys, so `KINETICS_STORAGE_OPTIONS` is written once. Options left out fall
back to the usual AWS_* environment variables and credential chain, as they do in Lance.

Secrets must not leak: nothing here logs options, and `describe` names only where the store is.

No dagster or ray imports.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

__all__ = [
    "ObjectStoreError",
    "describe",
    "download_file",
    "download_tree",
    "exists",
    "filesystem_for",
    "is_remote",
    "join",
    "read_json",
    "remove",
    "size",
    "upload_file",
    "write_json",
]

REMOTE_SCHEMES = ("s3", "s3a")

# Lance / object_store option names (and their short aliases) -> what they mean here.
_ACCESS_KEY = ("aws_access_key_id", "access_key_id")
_SECRET_KEY = ("aws_secret_access_key", "secret_access_key")
_SESSION_TOKEN = ("aws_session_token", "session_token", "token")
_REGION = ("aws_region", "region", "aws_default_region")
_ENDPOINT = ("aws_endpoint", "aws_endpoint_url", "aws_endpoint_url_s3", "endpoint", "endpoint_url")
_VIRTUAL_HOSTED = ("aws_virtual_hosted_style_request", "virtual_hosted_style_request")
_ENV_ENDPOINT = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
_ENV_REGION = ("AWS_REGION", "AWS_DEFAULT_REGION")


class ObjectStoreError(OSError):
    """An object-storage operation that failed; names the URI and the store, never a credential."""


def is_remote(uri: str | Path) -> bool:
    """True for URIs on object storage (s3://); local paths and file:// URLs are not remote."""
    scheme = urlparse(str(uri)).scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        return False
    if scheme not in REMOTE_SCHEMES:
        raise ObjectStoreError(
            f"{uri}: unsupported storage scheme {scheme!r}; archives can live on a local path or "
            f"S3-compatible storage ({', '.join(s + '://' for s in REMOTE_SCHEMES)})"
        )
    return True


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def _pick(options: dict[str, str], names: tuple[str, ...]) -> str | None:
    lowered = {k.lower(): v for k, v in options.items()}
    for name in names:
        if lowered.get(name) not in (None, ""):
            return str(lowered[name])
    return None


def _endpoint(options: dict[str, str]) -> str | None:
    return _pick(options, _ENDPOINT) or next((os.environ[v] for v in _ENV_ENDPOINT if os.environ.get(v)), None)


def _region(options: dict[str, str]) -> str | None:
    return _pick(options, _REGION) or next((os.environ[v] for v in _ENV_REGION if os.environ.get(v)), None)


def describe(storage_options: dict[str, str] | None) -> str:
    """Where the store is (endpoint and region), safe to log."""
    options = storage_options or {}
    return f"endpoint {_endpoint(options) or 'AWS default'}, region {_region(options) or 'default'}"


@functools.lru_cache(maxsize=8)
def _s3(frozen_options: tuple[tuple[str, str], ...]) -> pafs.S3FileSystem:
    options = dict(frozen_options)
    kwargs: dict = {}
    access_key, secret_key = _pick(options, _ACCESS_KEY), _pick(options, _SECRET_KEY)
    if access_key and secret_key:
        kwargs.update(access_key=access_key, secret_key=secret_key, session_token=_pick(options, _SESSION_TOKEN))
    region = _region(options)
    if region:
        kwargs["region"] = region
    endpoint = _endpoint(options)
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["scheme"] = parsed.scheme
        kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
    if (_pick(options, _VIRTUAL_HOSTED) or "").lower() == "true":
        kwargs["force_virtual_addressing"] = True
    return pafs.S3FileSystem(**kwargs)


def filesystem_for(uri: str, storage_options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The filesystem that holds `uri` and the path to pass to it (`bucket/key` for S3)."""
    if not is_remote(uri):
        parsed = urlparse(uri)
        local = parsed.path if parsed.scheme == "file" else uri
        return pafs.LocalFileSystem(), str(Path(local).expanduser().resolve())
    parsed = urlparse(uri)
    if not parsed.netloc:
        raise ObjectStoreError(f"{uri}: no bucket name")
    options = {str(k): str(v) for k, v in (storage_options or {}).items()}
    if not _endpoint(options) and not _region(options):
        # On AWS itself a bucket answers only in its own region: ask where it is, once per bucket.
        options["aws_region"] = _bucket_region(parsed.netloc)
    return _s3(tuple(sorted(options.items()))), f"{parsed.netloc}{parsed.path}".rstrip("/")


@functools.lru_cache(maxsize=64)
def _bucket_region(bucket: str) -> str:
    try:
        return pafs.resolve_s3_region(bucket)
    except OSError as exc:
        raise ObjectStoreError(f"s3://{bucket}: cannot find the bucket's region (set aws_region): {exc}") from None


def _fail(action: str, uri: str, storage_options: dict | None, exc: Exception) -> ObjectStoreError:
    return ObjectStoreError(f"{action} {uri} failed ({describe(storage_options)}): {exc}")


def size(uri: str, storage_options: dict[str, str] | None = None) -> int | None:
    """The object's size in bytes, or None when there is no such object."""
    fs, path = filesystem_for(uri, storage_options)
    try:
        info = fs.get_file_info(path)
    except OSError as exc:
        raise _fail("looking up", uri, storage_options, exc) from None
    return info.size if info.type == pafs.FileType.File else None


def exists(uri: str, storage_options: dict[str, str] | None = None) -> bool:
    return size(uri, storage_options) is not None


def upload_file(local: Path, uri: str, storage_options: dict[str, str] | None = None) -> int:
    """Copy a local file to `uri` (multipart for large files) and check the stored size; returns it."""
    fs, path = filesystem_for(uri, storage_options)
    expected = Path(local).stat().st_size
    try:
        pafs.copy_files(str(Path(local).resolve()), path, pafs.LocalFileSystem(), fs, chunk_size=8 << 20)
    except OSError as exc:
        raise _fail(f"uploading {local} to", uri, storage_options, exc) from None
    stored = size(uri, storage_options)
    if stored != expected:
        raise ObjectStoreError(f"uploading {local} to {uri}: stored {stored} bytes, expected {expected}")
    return expected


def download_file(uri: str, local: Path, storage_options: dict[str, str] | None = None) -> Path:
    """Copy one object to a local file, written beside it first and moved into place when complete."""
    fs, path = filesystem_for(uri, storage_options)
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(local.name + ".part")
    try:
        pafs.copy_files(path, str(partial.resolve()), fs, pafs.LocalFileSystem(), chunk_size=8 << 20)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise _fail("downloading", uri, storage_options, exc) from None
    partial.replace(local)
    return local


def download_tree(uri: str, local: Path, storage_options: dict[str, str] | None = None) -> list[Path]:
    """Copy every object under the `uri/` prefix into the folder `local`; returns the files written."""
    fs, path = filesystem_for(uri, storage_options)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise _fail("listing", uri, storage_options, exc) from None
    written = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(path) :].lstrip("/")
        written.append(download_file(join(uri, relative), Path(local) / relative, storage_options))
    return written


def remove(uri: str, storage_options: dict[str, str] | None = None) -> None:
    """Delete one object; a missing object is fine."""
    fs, path = filesystem_for(uri, storage_options)
    try:
        if fs.get_file_info(path).type == pafs.FileType.File:
            fs.delete_file(path)
    except OSError as exc:
        raise _fail("deleting", uri, storage_options, exc) from None


def read_json(uri: str, storage_options: dict[str, str] | None = None) -> Any:  # noqa: ANN401 - the caller knows its shape
    """The parsed JSON object at `uri`, or None when there is none (or it is not valid JSON)."""
    fs, path = filesystem_for(uri, storage_options)
    try:
        with fs.open_input_stream(path) as stream:
            return json.loads(stream.read())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
    except OSError as exc:
        raise _fail("reading", uri, storage_options, exc) from None


def write_json(uri: str, payload: object, storage_options: dict[str, str] | None = None) -> None:
    """One PUT: readers see the old object or the whole new one, never a part."""
    fs, path = filesystem_for(uri, storage_options)
    try:
        with fs.open_output_stream(path) as stream:
            stream.write(json.dumps(payload, indent=1, sort_keys=True).encode())
    except OSError as exc:
        raise _fail("writing", uri, storage_options, exc) from None
