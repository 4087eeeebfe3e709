"""Presets: options per (prior, task, method), loaded, merged, validated, resolved and
written in this one place.

A preset file (the shipped ``dmap/presets.json``, or one written by ``dmap tune``) is
``{"notes": {...}, "presets": {prior: {task: {method: options}}}}``.  Options for a run
are, in order: the method's defaults, its base method's preset (all but ``steps``; the
cse methods start from dps / dmap), its own preset, then what the caller overrides.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from dmap.config import ConfigError
from dmap.solvers import METHODS, Options, get_method
from dmap.utils import write_json_atomic

Table = dict[str, dict[str, dict[str, dict[str, Any]]]]


class PresetError(ValueError):
    """A preset file that cannot be read or holds invalid options."""


def validate(table: Table, what: str) -> Table:
    """Check every entry of ``table`` against its method's options; :class:`PresetError`
    naming the entry otherwise."""
    if not isinstance(table, dict):
        raise PresetError(f"{what}: not a preset file (no 'presets' table)")
    for prior, tasks in table.items():
        for task, methods in tasks.items():
            for method, options in methods.items():
                try:
                    get_method(method).options.from_dict(options, f"{what}: {prior}/{task}/{method}")
                except ValueError as e:
                    raise PresetError(str(e)) from None
    return table


def read_preset_file(path: str | Path) -> dict:
    """The whole preset file at ``path`` (notes and presets), validated."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PresetError(f"{path}: no such preset file") from None
    except (OSError, ValueError):
        raise PresetError(f"{path}: not a preset file (not JSON)") from None
    if not isinstance(data, dict):
        raise PresetError(f"{path}: not a preset file (no 'presets' table)")
    validate(data.get("presets"), str(path))
    return data


@cache
def _shipped() -> str:
    with resources.files("dmap").joinpath("presets.json").open() as f:
        return f.read()


def shipped_presets() -> Table:
    """The shipped presets (a fresh copy)."""
    return json.loads(_shipped())["presets"]


def load_presets(path: str | Path | None = None) -> Table:
    """The shipped presets, overlaid with those of the preset file ``path`` if given."""
    table = shipped_presets()
    if path is not None:
        for prior, tasks in read_preset_file(path)["presets"].items():
            for task, methods in tasks.items():
                for method, options in methods.items():
                    table.setdefault(prior, {}).setdefault(task, {})[method] = options
    return table


def resolve_options(method: str, prior: str, task: str, *, presets: Table | None = None, **overrides: Any) -> Options:
    """The options of ``method`` for a run on (``prior``, ``task``): defaults, then the
    presets (default: the shipped ones), then ``overrides`` (those not None).  Raises
    ``ValueError`` naming an unknown option or a bad value."""
    m = get_method(method)
    table = (presets if presets is not None else shipped_presets()).get(prior, {}).get(task, {})
    values: dict[str, Any] = {}
    if m.base:
        values.update({k: v for k, v in table.get(m.base, {}).items() if k != "steps"})
    values.update(table.get(method, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return m.options.from_dict(values, method)
    except ConfigError as e:
        raise ValueError(str(e)) from None


def write_preset(path: str | Path, prior: str, task: str, method: str, options: Options, note: str) -> None:
    """Add (or replace) the preset for (prior, task, method) in the preset file ``path``
    (created if missing), with ``note`` saying how it was made."""
    path = Path(path)
    data = read_preset_file(path) if path.exists() else {"notes": {}, "presets": {}}
    data.setdefault("presets", {}).setdefault(prior, {}).setdefault(task, {})[method] = options.to_dict()
    data.setdefault("notes", {})[f"{prior}/{task}/{method}"] = note
    write_json_atomic(path, data)


__all__ = [
    "METHODS",
    "PresetError",
    "Table",
    "load_presets",
    "read_preset_file",
    "resolve_options",
    "shipped_presets",
    "validate",
    "write_preset",
]
