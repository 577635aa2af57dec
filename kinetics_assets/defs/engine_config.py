"""Run-config fields taken from the engine's dataclasses, so that each setting is written once.

A run config exposes some fields of an engine dataclass (`TranscodeConfig`, `Limits`, ...) under the
same names, with the engine's types and defaults, flat beside the asset's own fields (the run-config
YAML a user writes). `to_engine` builds the engine's value back from the fields of the same name.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

import dagster as dg

from kinetics_assets.limits import Limits

__all__ = ["RunConfig", "engine_fields", "to_engine", "with_engine_fields"]

C = TypeVar("C", bound=dg.Config)
T = TypeVar("T")


def engine_fields(engine: type, *names: str) -> dict[str, tuple[Any, Any]]:
    """The named fields of the dataclass `engine` as pydantic field definitions (type, default)."""
    hints = typing.get_type_hints(engine)
    defaults = {f.name: f.default for f in dataclasses.fields(engine)}
    unknown = sorted(set(names) - set(defaults))
    if unknown:
        raise TypeError(f"{engine.__name__} has no field(s) {unknown}")
    return {name: (hints[name], defaults[name]) for name in names}


def with_engine_fields(name: str, base: type[C], *fields: dict[str, tuple[Any, Any]]) -> type[C]:
    """The config class `name`: `base` (its own fields, docstring and methods) plus `fields`."""
    merged = {k: v for group in fields for k, v in group.items()}
    clash = sorted(set(merged) & set(base.model_fields))
    if clash:
        raise TypeError(f"{name}: field(s) {clash} declared twice")
    # What a class statement with these annotated fields would hand to the (pydantic) metaclass.
    namespace = {
        "__module__": base.__module__,
        "__qualname__": name,
        "__doc__": base.__doc__,
        "__annotations__": {k: kind for k, (kind, _) in merged.items()},
        **{k: default for k, (_, default) in merged.items()},
    }
    return type(base)(name, (base,), namespace)


def to_engine(config: dg.Config, engine: type[T], **values: object) -> T:
    """`engine` from the config's fields that it has, plus `values`; the engine's defaults for the rest."""
    names = {f.name for f in dataclasses.fields(engine)}  # type: ignore[arg-type]
    taken = {name: getattr(config, name) for name in type(config).model_fields if name in names}
    return engine(**taken, **values)


class RunConfig(dg.Config):
    """Base of the assets' run configs."""

    def to_limits(self) -> Limits:
        """The input limits from the limit fields this run config exposes; the defaults for the rest."""
        return to_engine(self, Limits)
