"""Solvers, their registry and presets: ``solve(method, prior, task, y)``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from torch import Tensor

from dmap.cse import CSE, find_cse
from dmap.operators.tasks import Task
from dmap.priors.base import Prior
from dmap.rng import Generators
from dmap.solvers.common import Callback, NonFiniteError, project_to_sphere
from dmap.solvers.cse import solve_cse, solve_dmap_cse, solve_dps_cse
from dmap.solvers.dmap import solve_dmap
from dmap.solvers.dps import solve_dps
from dmap.solvers.dsg import solve_dsg


@dataclass(frozen=True)
class Method:
    """A registered solver: its function, its default options and its cost."""

    name: str
    fn: Callable[..., Tensor]
    defaults: dict
    description: str
    linear_only: bool = False
    base: str | None = None  # the method whose presets this one starts from (all but ``steps``)
    uses_cse: bool = False  # needs a conditional score estimator (``cse=``)

    def step_evals(self, options: dict) -> int:
        """Network evaluations of one outer step: two for DPS+CSE guided by the prior
        (the estimator for ``mu``, the prior for the likelihood gradient), else one."""
        return 2 if self.base == "dps" and options.get("guide") == "prior" else 1

    def nfe(self, options: dict) -> int:
        """Network evaluations per image for ``options`` (a forward+backward pass counts
        one; so does one of the estimator, frozen network and adapter together)."""
        steps = options["steps"]
        return steps * self.step_evals(options) + (steps - 1) * options.get("inner_steps", 0)

    def steps_for(self, nfe: int, options: dict) -> int:
        """The largest number of steps whose cost is at most ``nfe`` evaluations."""
        k = options.get("inner_steps", 0)
        return max(1, (nfe + k) // (self.step_evals(options) + k))


METHODS: dict[str, Method] = {
    "dps": Method("dps", solve_dps, {"steps": 1000, "step_size": 1.0, "eta": 1.0, "clamp": True},
                  "Diffusion Posterior Sampling (Chung et al. 2023)"),
    "dsg": Method("dsg", solve_dsg, {"steps": 1000, "guidance_rate": 0.1, "interval": 1, "eta": 1.0, "clamp": True},
                  "Spherical Gaussian guidance (Yang et al. 2024)"),
    "dmap": Method("dmap", solve_dmap, {"steps": 250, "step_size": 1.0, "inner_steps": 3, "eta": 1.0, "clamp": True},
                   "posterior maximization with sphere projection (Xu et al. 2025)"),
    "cse": Method("cse", solve_cse, {"steps": 1000, "eta": 1.0},
                  "reverse process of the conditional score estimator alone (Xu et al. 2025)", True, uses_cse=True),
    "dps+cse": Method("dps+cse", solve_dps_cse,
                      {"steps": 500, "step_size": 1.0, "eta": 1.0, "clamp": True, "guide": "prior"},
                      "DPS with the conditional score estimator for the prior step", True, "dps", True),
    "dmap+cse": Method("dmap+cse", solve_dmap_cse,
                       {"steps": 250, "step_size": 1.0, "inner_steps": 3, "eta": 1.0, "clamp": True, "guide": "prior"},
                       "DMAP with the conditional score estimator for the prior step", True, "dmap", True),
}
GUIDES = ("prior", "cse")


@lru_cache(maxsize=None)
def shipped_presets() -> dict:
    """Shipped presets ``{prior: {task: {method: options}}}`` (made by ``dmap tune``)."""
    with resources.files("dmap").joinpath("presets.json").open() as f:
        return json.load(f)["presets"]


def load_presets(path: str | Path) -> dict:
    """The shipped presets overlaid with those of a preset file written by ``dmap tune``
    (``{"presets": {prior: {task: {method: options}}}}``)."""
    table = json.loads(json.dumps(shipped_presets()))
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{path}: not a preset file (not JSON)") from None
    if not isinstance(data, dict) or not isinstance(data.get("presets"), dict):
        raise ValueError(f"{path}: not a preset file (no 'presets' table)")
    for prior, tasks in data["presets"].items():
        for task, methods in tasks.items():
            for method, options in methods.items():
                table.setdefault(prior, {}).setdefault(task, {})[method] = options
    return table


def resolve_options(method: str, prior_name: str, task_name: str, *, presets: dict | None = None,
                    **overrides) -> dict:
    """Options for a run: method defaults, then the preset for (prior, task, method) from
    ``presets`` (default: the shipped ones; see :func:`load_presets`), then ``overrides``
    (those that are not None).  Validates them."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    m = METHODS[method]
    options = dict(m.defaults)
    shipped = (presets or shipped_presets()).get(prior_name, {}).get(task_name, {})
    if m.base:
        options.update({k: v for k, v in shipped.get(m.base, {}).items() if k != "steps"})
    options.update(shipped.get(method, {}))
    options.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(options) - set(m.defaults)
    if unknown:
        raise ValueError(f"{method} takes no option {', '.join(sorted(unknown))}")
    if not (isinstance(options["steps"], int) and options["steps"] >= 1):
        raise ValueError(f"steps must be a positive integer, got {options['steps']}")
    for key in ("step_size", "guidance_rate", "eta"):
        if key in options and not (math.isfinite(options[key]) and options[key] >= 0):
            raise ValueError(f"{key.replace('_', ' ')} must be a finite number >= 0, got {options[key]}")
    if options.get("inner_steps", 1) < 1 or options.get("interval", 1) < 1:
        raise ValueError("inner steps and interval must be >= 1")
    if options.get("guide", "prior") not in GUIDES:
        raise ValueError(f"guide must be one of {', '.join(GUIDES)}, got {options['guide']!r}")
    return options


def solve(
    method: str,
    prior: Prior,
    task: Task,
    y: Tensor,
    *,
    steps: int | None = None,
    generator: Generators = None,
    callback: Callback = None,
    cse: CSE | None = None,
    presets: dict | None = None,
    **options,
) -> Tensor:
    """Restore ``x`` from ``y = A(x) + n`` with ``method`` on ``prior``; returns ``x0`` in
    [-1, 1], ``[B, C, H, W]``.  Options not given come from the preset for
    ``(prior.name, task.name, method)``, then the method's defaults.  Pass one generator
    per image (``dmap.rng.sample_generators``) to make a batch equal to its images solved
    one by one.  Methods with a conditional score estimator take ``cse`` (default: the
    shipped one for the prior and task, :func:`dmap.cse.find_cse`); ``presets`` is a
    table from :func:`load_presets` (default: the shipped presets)."""
    opts = resolve_options(method, prior.name, task.name, presets=presets, steps=steps, **options)
    if tuple(task.operator.x_shape) != tuple(prior.shape):
        raise ValueError(f"task built for images {task.operator.x_shape}, prior expects {prior.shape}")
    m = METHODS[method]
    if m.linear_only and not task.operator.linear:
        raise ValueError(f"{method} needs a linear task; {task.name} is not")
    if m.uses_cse:
        if cse is None:
            cse = find_cse(prior, task.name)
        cse.check(prior, task.name)
        opts["cse"] = cse
    elif cse is not None:
        raise ValueError(f"{method} takes no conditional score estimator")
    return m.fn(prior, task.operator, y, generator=generator, callback=callback, **opts)


__all__ = ["METHODS", "Method", "NonFiniteError", "load_presets", "shipped_presets", "project_to_sphere", "resolve_options", "solve",
           "solve_cse", "solve_dmap", "solve_dmap_cse", "solve_dps", "solve_dps_cse", "solve_dsg"]
