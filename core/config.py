"""The base of every settings dataclass: one way to store a config beside its results and to read it back.

A config is a frozen dataclass that validates itself in ``__post_init__``. :meth:`Config.to_dict` gives plain
JSON values (tuples become lists, nested configs dicts); :meth:`Config.from_dict` reads them back, strict by
default: an unknown key is an error that names it and the known keys. ``strict=False`` drops unknown keys and is
for reading configs stored by an older version only. Every field carries its own help text
(``setting(default, "…")``), which :func:`field_help` returns for documentation, forms and CLI help.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from functools import cache
from typing import Any, ClassVar, Self

from core.errors import SynthloopError


def setting(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A config field with its help text; ``factory`` for mutable defaults."""
    if not help:
        raise TypeError("every setting needs a help text")
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    """Base of the frozen settings dataclasses. ``KIND`` names the config in messages ("training setting")."""

    KIND: ClassVar[str] = "setting"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, strict: bool = True) -> Self:
        data = dict(data or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown and strict:
            raise SynthloopError(f"unknown {cls.KIND} {unknown[0]!r}: the known ones are {', '.join(known)}")
        hints = _hints(cls)
        return cls(**{name: _coerce(hints[name], data[name], strict) for name in known if name in data})

    def replace(self, **changes: Any) -> Self:
        """A copy with some settings changed, validated like a new config."""
        return type(self).from_dict({**self.to_dict(), **changes})


def field_help(config: type[Config]) -> dict[str, str]:
    """Each field's help text, in field order."""
    return {f.name: f.metadata.get("help", "") for f in fields(config)}


def _plain(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(hint: Any, value: Any, strict: bool) -> Any:
    """JSON gives lists and dicts; the config's fields want tuples and nested configs."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    for option in options:
        if isinstance(option, type) and issubclass(option, Config) and isinstance(value, Mapping):
            return option.from_dict(value, strict=strict)
        if (option is tuple or typing.get_origin(option) is tuple) and isinstance(value, list):
            return tuple(value)
    return value


# ------------------------------------------------------------------------------------ shared validators


def is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SynthloopError(f"{name} {value!r} is not valid: use one of {', '.join(allowed)}")


def check_whole_number(name: str, value: object, low: int, high: int) -> None:
    if not is_whole_number(value) or not low <= value <= high:  # type: ignore[operator]
        raise SynthloopError(f"{name} {value!r} is not valid: use a whole number from {low} to {high}")


def check_number(name: str, value: object, low: float, high: float) -> None:
    if not is_finite_number(value) or not low <= value <= high:  # type: ignore[operator]
        raise SynthloopError(f"{name} {value!r} is not valid: use a number from {low} to {high}")
