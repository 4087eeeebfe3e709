"""Presets: options per (prior, task, method), loaded, merged, validated, resolved and
written in this one place.

A preset file (the shipped ``dmap/presets.json``, or one written by ``dmap tune``) is
``{"format": 2, "notes": {...}, "presets": {prior: {task: {method: options}}}}``.  Format 2
(dmap 0.3) gives the guided methods' strengths per unit of diffusion time
(``guidance="time"``, their default); files without a format hold per-step values, so
their entries read as ``guidance="constant"`` unless they say otherwise.  Options for a run
are, in order: the method's defaults, its base method's preset (all but ``steps``; the
cse methods start from dps / dmap), its own preset, then what the caller overrides.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from dmap.config import ConfigError
from dmap.solvers import METHODS, Options, get_method
from dmap.utils import write_json_atomic

Table = dict[str, dict[str, dict[str, dict[str, Any]]]]


FORMAT = 2


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
                where = f"{what}: {prior}/{task}/{method}"
                options = dict(options)
                by_steps = options.pop("by_steps", {})
                try:
                    get_method(method).options.from_dict(options, where)
                    if not _is_table(by_steps):
                        raise ValueError(f"{where}: by_steps must map step counts to positive step sizes")
                except ValueError as e:
                    raise PresetError(str(e)) from None
    return table


def _is_table(by_steps) -> bool:
    """``{"100": 0.3, ...}``: step counts (digits) to finite positive numbers."""
    return isinstance(by_steps, dict) and all(
        str(k).isdigit() and int(k) >= 1 and isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for k, v in by_steps.items()
    )


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
    validate(upgrade(data).get("presets"), str(path))
    return data


def upgrade(data: dict) -> dict:
    """``data`` in the current format: entries of a file older than format 2 whose method
    has a ``guidance`` option and which do not set it get ``guidance="constant"`` (their
    values were tuned per step)."""
    if data.get("format", 1) < FORMAT and isinstance(data.get("presets"), dict):
        for tasks in data["presets"].values():
            for methods in tasks.values() if isinstance(tasks, dict) else ():
                for method, options in methods.items() if isinstance(methods, dict) else ():
                    fields = METHODS[method].options.__dataclass_fields__ if method in METHODS else {}
                    if "guidance" in fields and isinstance(options, dict):
                        options.setdefault("guidance", "constant")
    data["format"] = FORMAT
    return data


@cache
def _shipped() -> str:
    with resources.files("dmap").joinpath("presets.json").open() as f:
        return f.read()


def shipped_presets() -> Table:
    """The shipped presets (a fresh copy)."""
    return upgrade(json.loads(_shipped()))["presets"]


def load_presets(path: str | Path | None = None) -> Table:
    """The shipped presets, overlaid with those of the preset file ``path`` if given."""
    table = shipped_presets()
    if path is not None:
        for prior, tasks in read_preset_file(path)["presets"].items():
            for task, methods in tasks.items():
                for method, options in methods.items():
                    table.setdefault(prior, {}).setdefault(task, {})[method] = options
    return table


def strength_at(by_steps: dict[str, float], steps: int) -> float:
    """The strength for ``steps`` from a preset's table ``{steps: strength}`` (per unit of
    diffusion time): linear in ``log(strength)`` against ``log(steps)`` between its
    entries; the last entry past them; below the first (``s0``, ``v0``) ``v0 steps / s0``,
    which holds the strength of one step (``v0`` times its ``T / s0`` time units) at what
    tuning saw, since an explicit step larger than that can overshoot.  Three
    significant digits."""
    points = sorted((int(k), float(v)) for k, v in by_steps.items())
    if steps <= points[0][0]:
        return float(f"{points[0][1] * steps / points[0][0]:.3g}")
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if steps <= s1:
            w = math.log(steps / s0) / math.log(s1 / s0)
            return float(f"{math.exp((1 - w) * math.log(v0) + w * math.log(v1)):.3g}")
    return points[-1][1]


def resolve_options(
    method: str, prior: str, task: str, *, presets: Table | None = None, nfe: int | None = None, **overrides: Any
) -> Options:
    """The options of ``method`` for a run on (``prior``, ``task``): defaults, then the
    presets (default: the shipped ones), then ``overrides`` (those not None); with ``nfe``,
    the most steps that fit that many network evaluations per image.  A preset with a
    ``by_steps`` table (``{steps: strength}``, from ``dmap tune`` at several budgets) sets
    the method's strength for the steps the run takes (:func:`strength_at`) unless the
    caller gives it.  Raises ``ValueError`` naming an unknown option or a bad value."""
    m = get_method(method)
    table = (presets if presets is not None else shipped_presets()).get(prior, {}).get(task, {})
    values: dict[str, Any] = {}
    if m.base:
        values.update({k: v for k, v in table.get(m.base, {}).items() if k != "steps"})
    values.update(table.get(method, {}))
    given = {k: v for k, v in overrides.items() if v is not None}
    if nfe is not None and "steps" in given:
        raise ValueError("give the budget (nfe, --nfe) or the steps (--steps), not both: the steps follow from the budget")
    values.update(given)
    by_steps = values.pop("by_steps", None)
    try:
        options = m.options.from_dict(values, method)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    if nfe is not None:
        options = options.for_budget(nfe)
    key = m.options.strength()
    if by_steps and key not in given:
        options = options.replace(**{key: strength_at(by_steps, options.steps)})
    return options


def write_preset(
    path: str | Path, prior: str, task: str, method: str, options: Options, note: str, by_steps: dict[int, float] | None = None
) -> None:
    """Add (or replace) the preset for (prior, task, method) in the preset file ``path``
    (created if missing), with ``note`` saying how it was made and, from a tuning at
    several budgets, the strength for each number of steps (``by_steps``)."""
    path = Path(path)
    data = read_preset_file(path) if path.exists() else {"format": FORMAT, "notes": {}, "presets": {}}
    entry = options.to_dict() | ({"by_steps": {str(k): v for k, v in sorted(by_steps.items())}} if by_steps else {})
    data.setdefault("presets", {}).setdefault(prior, {}).setdefault(task, {})[method] = entry
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
    "strength_at",
    "validate",
    "write_preset",
]
