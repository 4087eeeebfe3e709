"""One configuration mechanism for everything that is saved: frozen dataclasses that
write themselves to plain dicts (JSON-ready) and read themselves back, refusing unknown
or missing fields by name.  Schedules, network architectures, prior and adapter
descriptions, benchmark configurations and solver options all use it, so a field added
in one place is saved, loaded and checked everywhere."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A saved configuration that does not fit its dataclass (unknown, missing or mistyped fields)."""


class Config:
    """Mixin for (frozen) dataclasses: :meth:`to_dict` and :meth:`from_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """Field -> value, nested configs as dicts and tuples as lists (JSON-ready)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], what: str | None = None) -> C:
        """The config saved as ``data``; :class:`ConfigError` naming the unknown or missing
        fields (``what`` says where it came from, e.g. a file name)."""
        what = what or cls.__name__
        if not isinstance(data, dict):
            raise ConfigError(f"{what}: expected a table of settings, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"{what}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(fields)}")
        hints = typing.get_type_hints(cls)
        values = {}
        for name, value in data.items():
            values[name] = _typed(hints.get(name), value, f"{what}: {name}")
        missing = [
            n
            for n, f in fields.items()
            if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"{what}: missing setting(s) {', '.join(missing)}")
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` (validated again by ``__post_init__``)."""
        return dataclasses.replace(self, **changes)


def _plain(v: Any) -> Any:
    if isinstance(v, Config):
        return v.to_dict()
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _typed(hint: Any, value: Any, where: str) -> Any:
    """``value`` read from JSON, converted to ``hint``: nested configs, tuples, and ints
    where floats are expected; a value of another kind is refused."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _typed(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a {hint}")
    if isinstance(hint, type) and issubclass(hint, Config):
        return hint.from_dict(value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        return tuple(_typed(inner, v, where) for v in value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, anything else stays a string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_assignments(items: list[str], where: str) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}`` (values by :func:`parse_value`)."""
    out = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{where}: {item!r} is not key=value")
        out[key.strip()] = parse_value(val.strip())
    return out
