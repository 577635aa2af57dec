"""Run-config fields taken from the engine's dataclasses, so that each setting is written once.

A run config exposes some fields of an engine dataclass (`TranscodeConfig`, `Limits`, ...) under the
same names, with the engine's types and defaults, flat beside the asset's own fields (the run-config
YAML a user writes). `to_engine` builds the engine's value back from the fields of the same name.

A run config is a class statement decorated with `adding_engine_fields`, so that the type checker
sees a class (with the config's own fields and methods) where an asset names its config type; the
decorator hands Dagster that class with the engine's fields added.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import TYPE_CHECKING, Any, TypeVar

import dagster as dg
import pydantic

from kinetics_assets.limits import Limits

if TYPE_CHECKING:
    from collections.abc import Callable

    from _typeshed import DataclassInstance

__all__ = ["RunConfig", "adding_engine_fields", "engine_fields", "to_engine", "with_engine_fields"]

C = TypeVar("C", bound=dg.Config)
T = TypeVar("T", bound="DataclassInstance")


def engine_fields(engine: type[DataclassInstance], *names: str) -> dict[str, tuple[Any, Any]]:
    """The named fields of the dataclass `engine` as pydantic field definitions (type, default)."""
    hints = typing.get_type_hints(engine)
    defaults = {f.name: f.default for f in dataclasses.fields(engine)}
    unknown = sorted(set(names) - set(defaults))
    if unknown:
        raise TypeError(f"{engine.__name__} has no field(s) {unknown}")
    return {name: (hints[name], defaults[name]) for name in names}


def with_engine_fields(name: str, base: type[C], *fields: dict[str, tuple[Any, Any]]) -> type[C]:
    """The config class `name`: `base` (its own fields, docstring and methods) plus `fields`."""
    # Any: to the type checker, a keyword argument of create_model below could be any of its parameters.
    merged: dict[str, Any] = {k: v for group in fields for k, v in group.items()}
    clash = sorted(set(merged) & set(base.model_fields))
    if clash:
        raise TypeError(f"{name}: field(s) {clash} declared twice")
    # A subclass through base's own (Dagster's) metaclass, as a class statement would make it.
    return pydantic.create_model(
        name,
        __base__=base,
        __module__=base.__module__,
        __qualname__=name,
        __doc__=base.__doc__,
        **merged,
    )


def adding_engine_fields(*fields: dict[str, tuple[Any, Any]]) -> Callable[[type[C]], type[C]]:
    """Class decorator: the decorated run config, under its own name, plus `fields`."""

    def decorate(base: type[C]) -> type[C]:
        return with_engine_fields(base.__name__, base, *fields)

    return decorate


def to_engine(config: dg.Config, engine: type[T], **values: object) -> T:
    """`engine` from the config's fields that it has, plus `values`; the engine's defaults for the rest."""
    names = {f.name for f in dataclasses.fields(engine)}
    taken = {name: getattr(config, name) for name in type(config).model_fields if name in names}
    return engine(**taken, **values)


class RunConfig(dg.Config):
    """Base of the assets' run configs."""

    def to_limits(self) -> Limits:
        """The input limits from the limit fields this run config exposes; the defaults for the rest."""
        return to_engine(self, Limits)
