"""Presets: options per (prior, task, method, noise regime, K), loaded, merged, validated,
resolved and written in this one place.

A preset file (the shipped ``dmap/presets.json``, or one written by ``dmap tune``) is
``{"format": 3, "notes": {...}, "presets": {prior: {task: {method: [entry, ...]}}}}``.  An
entry holds options, the noise regime it was tuned in (``"noise": "noisy"`` for
sigma_y > 0, ``"noiseless"`` for sigma_y = 0) and, from a tuning at several budgets, a
``by_steps`` table; a method with a field declared with ``choices`` (DMAP's K) has one entry
per value tuned, the first of a regime being the one used when the caller leaves K free.
A run takes the entry of its regime (the noisy one, said so, where its regime has none)
and of the K the caller or the protocol fixes: a fixed K without an entry is an error
unless the caller gives the strength too, since a step size tuned at one K does not hold
at another.  Format 2 (dmap 0.3) files hold one noisy entry per method; earlier files,
per-step values (their entries read as ``guidance="constant"``).  Options for a run are,
in order: the method's defaults, its base method's entry (all but ``steps``; the cse
methods start from dps / dmap), its own entry, then what the caller overrides.
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

Table = dict[str, dict[str, dict[str, list[dict[str, Any]]]]]


FORMAT = 3
NOISE = ("noisy", "noiseless")


class PresetError(ValueError):
    """A preset file that cannot be read or holds invalid options, or no preset for a run."""


def regime(sigma_y: float | None) -> str:
    """The noise regime of a run: ``noiseless`` for sigma_y = 0, else (or unknown) ``noisy``."""
    return "noiseless" if sigma_y == 0 else "noisy"


def validate(table: Table, what: str) -> Table:
    """Check every entry of ``table`` against its method's options; :class:`PresetError`
    naming the entry otherwise."""
    if not isinstance(table, dict):
        raise PresetError(f"{what}: not a preset file (no 'presets' table)")
    for prior, tasks in table.items():
        for task, methods in tasks.items():
            for method, entries in methods.items():
                where = f"{what}: {prior}/{task}/{method}"
                if not (isinstance(entries, list) and all(isinstance(e, dict) for e in entries)):
                    raise PresetError(f"{where}: a list of entries (format {FORMAT}), got {type(entries).__name__}")
                for entry in entries:
                    options = dict(entry)
                    by_steps, noise = options.pop("by_steps", {}), options.pop("noise", "noisy")
                    try:
                        get_method(method).options.from_dict(options, where)
                        if not _is_table(by_steps):
                            raise ValueError(f"{where}: by_steps must map step counts to positive step sizes")
                        if noise not in NOISE:
                            raise ValueError(f"{where}: noise must be one of {', '.join(NOISE)}, got {noise!r}")
                    except ValueError as e:
                        raise PresetError(str(e)) from None
    return table


def _is_table(by_steps) -> bool:
    """``{"100": 0.3, "1000": [0.3, 100], ...}``: step counts (digits) to finite positive
    numbers, or to ``[strength, fewer steps]`` (a cap: a smaller budget did better)."""

    def value(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0

    def capped(k, v) -> bool:
        return isinstance(v, list) and len(v) == 2 and value(v[0]) and isinstance(v[1], int) and 1 <= v[1] < int(k)

    entries = by_steps.items() if isinstance(by_steps, dict) else None
    return (
        entries is not None
        and all(str(k).isdigit() and int(k) >= 1 and (value(v) or capped(k, v)) for k, v in entries)
        and (not by_steps or any(map(value, by_steps.values())))
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
    values were tuned per step); the one entry per method of files older than format 3
    becomes a list of one noisy entry."""
    version = data.get("format", 1)
    if version < FORMAT and isinstance(data.get("presets"), dict):
        for tasks in data["presets"].values():
            for methods in tasks.values() if isinstance(tasks, dict) else ():
                for method, options in methods.items() if isinstance(methods, dict) else ():
                    if not isinstance(options, dict):
                        continue
                    fields = METHODS[method].options.__dataclass_fields__ if method in METHODS else {}
                    if version < 2 and "guidance" in fields:
                        options.setdefault("guidance", "constant")
                    methods[method] = [{"noise": "noisy", **options}]
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
    """The shipped presets, overlaid with those of the preset file ``path`` if given (its
    entries replace the shipped ones of the same regime and K, and its first entry of a
    regime is the one used when K is free)."""
    table = shipped_presets()
    if path is not None:
        for prior, tasks in read_preset_file(path)["presets"].items():
            for task, methods in tasks.items():
                for method, entries in methods.items():
                    seen = set()
                    for entry in entries:
                        noise = entry.get("noise", "noisy")
                        merge(table.setdefault(prior, {}).setdefault(task, {}), method, entry, default=noise not in seen)
                        seen.add(noise)
    return table


def _key(method: str, entry: dict) -> tuple:
    """What an entry is keyed by: its noise regime and its values of the keyed fields (K)."""
    return (entry.get("noise", "noisy"), *(entry.get(k, v) for k, v in get_method(method).options.keyed().items()))


def merge(methods: dict[str, list[dict]], method: str, entry: dict, default: bool) -> None:
    """Put ``entry`` among ``methods[method]``'s entries: first of its regime if ``default``
    (the entry a run with K free takes), else in place of the one with its key (or last)."""
    entries = methods.get(method, [])
    same = [i for i, e in enumerate(entries) if _key(method, e) == _key(method, entry)]
    if same and not default:
        methods[method] = [entry if i == same[0] else e for i, e in enumerate(entries)]
        return
    entries = [e for i, e in enumerate(entries) if i not in same]
    regime_of = [i for i, e in enumerate(entries) if e.get("noise", "noisy") == entry.get("noise", "noisy")]
    entries.insert(regime_of[0] if default and regime_of else len(entries), entry)
    methods[method] = entries


def select(table: Table, prior: str, task: str, method: str, *, sigma_y: float | None = None, fixed: dict | None = None):
    """The preset entry (options and ``by_steps``, without ``noise``) of ``method`` for a run
    on (``prior``, ``task``) with noise ``sigma_y`` and the keyed options ``fixed`` (e.g.
    ``{"inner_steps": 3}``; the others of ``fixed`` are ignored), and a label saying which
    it is (``"noisy, inner_steps=3"``; ``"noisy (none for noiseless)"`` where the run's
    regime has none; ``None`` where the method has no preset there).  Raises
    :class:`PresetError` where entries exist but none at the fixed K."""
    entries = table.get(prior, {}).get(task, {}).get(method, [])
    if not entries:
        return {}, None
    keyed = get_method(method).options.keyed()
    want = regime(sigma_y)
    pool = [e for e in entries if e.get("noise", "noisy") == want]
    label = want if pool else f"{entries[0].get('noise', 'noisy')} (none for {want})"
    pool = pool or [e for e in entries if e.get("noise", "noisy") == entries[0].get("noise", "noisy")]
    fixed = {k: v for k, v in (fixed or {}).items() if k in keyed and v is not None}
    match = [e for e in pool if all(e.get(k, keyed[k]) == v for k, v in fixed.items())]
    if not match:
        have = ", ".join(sorted({f"{k}={e.get(k, keyed[k])}" for e in pool for k in fixed}))
        want_k = ", ".join(f"{k}={v}" for k, v in fixed.items())
        strength = get_method(method).options.strength().replace("_", " ")
        raise PresetError(
            f"no {label} preset for {method} with {want_k} on {prior}/{task} (tuned at {have}): give the {strength} "
            f"or tune one (dmap tune ... " + " ".join(f"--option {k}={v}" for k, v in fixed.items()) + ")"
        )
    entry = {k: v for k, v in match[0].items() if k != "noise"}
    return entry, ", ".join([label, *(f"{k}={entry.get(k, d)}" for k, d in keyed.items())])


def at_steps(by_steps: dict[str, Any], steps: int) -> tuple[int, float]:
    """The steps to run and the strength for a budget that gives ``steps`` steps, from a
    preset's table ``{steps: strength or [strength, fewer steps]}``: ``steps``, or fewer
    where the first entry at or above ``steps`` (the last one past them) is a cap ``[v,
    c]`` (on the tuning images ``c`` steps did better than more): ``min(steps, c)``; the
    strength at the steps run (:func:`strength_at`)."""
    table = sorted((int(k), v) for k, v in by_steps.items())
    above = next((v for k, v in table if k >= steps), table[-1][1])
    steps = min(steps, above[1]) if isinstance(above, list) else steps
    return steps, strength_at(by_steps, steps)


def strength_at(by_steps: dict[str, Any], steps: int) -> float:
    """The strength (per unit of diffusion time) for a run of ``steps`` steps, from the
    uncapped entries of a preset's table: linear in ``log(strength)`` against
    ``log(steps)`` between them; the last entry past them; below the first (``s0``,
    ``v0``) ``v0 steps / s0``, which holds the strength of one step (``v0`` times its
    ``T / s0`` time units) at what tuning saw, since an explicit step larger than that
    can overshoot.  Three significant digits."""
    points = sorted((int(k), float(v)) for k, v in by_steps.items() if not isinstance(v, list))
    if steps <= points[0][0]:
        return float(f"{points[0][1] * steps / points[0][0]:.3g}")
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if steps <= s1:
            w = math.log(steps / s0) / math.log(s1 / s0)
            return float(f"{math.exp((1 - w) * math.log(v0) + w * math.log(v1)):.3g}")
    return points[-1][1]


def resolve_options(
    method: str,
    prior: str,
    task: str,
    *,
    presets: Table | None = None,
    nfe: int | None = None,
    sigma_y: float | None = None,
    **overrides: Any,
) -> Options:
    """The options of ``method`` for a run on (``prior``, ``task``): defaults, then the
    preset entry of the run's noise regime (``sigma_y``; unknown: noisy) and of the K the
    overrides fix (:func:`select`; default presets: the shipped ones), then ``overrides``
    (those not None); with ``nfe``, the most steps that fit that many network evaluations
    per image.  A preset with a ``by_steps`` table (``{steps: strength}``, from ``dmap
    tune`` at several budgets) sets the method's strength for the steps the run takes
    (:func:`strength_at`) unless the caller gives it.  Raises ``ValueError`` naming an
    unknown option or a bad value, :class:`PresetError` for a fixed K without a preset."""
    m = get_method(method)
    table = presets if presets is not None else shipped_presets()
    key = m.options.strength()
    given = {k: v for k, v in overrides.items() if v is not None}
    if nfe is not None and "steps" in given:
        raise ValueError("give the budget (nfe, --nfe) or the steps (--steps), not both: the steps follow from the budget")
    try:
        m.options.from_dict(given, method)  # (a bad value is named before any preset is looked up)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    values: dict[str, Any] = {}
    for name in filter(None, (m.base, method)):
        try:
            entry, _ = select(table, prior, task, name, sigma_y=sigma_y, fixed=given)
        except PresetError:
            if key not in given:
                raise
            entry = {}
        values.update({k: v for k, v in entry.items() if k != "steps" or name == method})
    values.update(given)
    by_steps = values.pop("by_steps", None)
    try:
        options = m.options.from_dict(values, method)
    except ConfigError as e:
        raise ValueError(str(e)) from None
    if nfe is not None:
        options = options.for_budget(nfe)
    if by_steps and key not in given:
        steps = at_steps(by_steps, options.steps)[0] if nfe is not None else options.steps  # a budget is a cap
        options = options.replace(steps=steps, **{key: strength_at(by_steps, steps)})
    return options


def write_preset(
    path: str | Path,
    prior: str,
    task: str,
    method: str,
    options: Options,
    note: str,
    by_steps: dict[int, float] | None = None,
    *,
    sigma_y: float | None = None,
    default: bool = True,
) -> None:
    """Add (or replace) the entry of (prior, task, method) for the noise regime of
    ``sigma_y`` and the K of ``options`` in the preset file ``path`` (created if missing),
    with ``note`` saying how it was made and, from a tuning at several budgets, the
    strength for each number of steps (``by_steps``); the entry a run with K free takes if
    ``default`` (a search over K), else one only a fixed K selects."""
    path = Path(path)
    data = read_preset_file(path) if path.exists() else {"format": FORMAT, "notes": {}, "presets": {}}
    entry = {"noise": regime(sigma_y), **options.to_dict()}
    entry |= {"by_steps": {str(k): v for k, v in sorted(by_steps.items())}} if by_steps else {}
    merge(upgrade(data)["presets"].setdefault(prior, {}).setdefault(task, {}), method, entry, default)
    keyed = "".join(f"/{k}={getattr(options, k)}" for k in options.keyed())
    data.setdefault("notes", {})[f"{prior}/{task}/{method}/{entry['noise']}{keyed}"] = note
    write_json_atomic(path, data)


__all__ = [
    "METHODS",
    "PresetError",
    "Table",
    "load_presets",
    "merge",
    "read_preset_file",
    "regime",
    "resolve_options",
    "select",
    "shipped_presets",
    "at_steps",
    "strength_at",
    "validate",
    "write_preset",
]
