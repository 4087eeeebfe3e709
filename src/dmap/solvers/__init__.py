"""Solvers, their registry and presets: ``solve(method, prior, task, y)``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from torch import Tensor

from dmap.operators.tasks import Task
from dmap.priors.base import Prior
from dmap.rng import Generators
from dmap.solvers.common import Callback, NonFiniteError, project_to_sphere
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

    def nfe(self, options: dict) -> int:
        """Network evaluations per image for ``options`` (a forward+backward pass counts one)."""
        steps = options["steps"]
        return steps + (steps - 1) * options.get("inner_steps", 0)

    def steps_for(self, nfe: int, options: dict) -> int:
        """The largest number of steps whose cost is at most ``nfe`` evaluations."""
        k = options.get("inner_steps", 0)
        return max(1, (nfe + k) // (1 + k))


METHODS: dict[str, Method] = {
    "dps": Method("dps", solve_dps, {"steps": 1000, "step_size": 1.0, "eta": 1.0, "clamp": True},
                  "Diffusion Posterior Sampling (Chung et al. 2023)"),
    "dsg": Method("dsg", solve_dsg, {"steps": 1000, "guidance_rate": 0.1, "interval": 1, "eta": 1.0, "clamp": True},
                  "Spherical Gaussian guidance (Yang et al. 2024)"),
    "dmap": Method("dmap", solve_dmap, {"steps": 250, "step_size": 1.0, "inner_steps": 3, "eta": 1.0, "clamp": True},
                   "posterior maximization with sphere projection (Xu et al. 2025)"),
}


@lru_cache(maxsize=None)
def presets() -> dict:
    """Shipped presets ``{prior: {task: {method: options}}}`` (see ``benchmarks/tune_presets.py``)."""
    with resources.files("dmap").joinpath("presets.json").open() as f:
        return json.load(f)["presets"]


def resolve_options(method: str, prior_name: str, task_name: str, **overrides) -> dict:
    """Options for a run: method defaults, then the preset for (prior, task, method),
    then ``overrides`` (those that are not None).  Validates them."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    m = METHODS[method]
    options = dict(m.defaults)
    options.update(presets().get(prior_name, {}).get(task_name, {}).get(method, {}))
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
    **options,
) -> Tensor:
    """Restore ``x`` from ``y = A(x) + n`` with ``method`` on ``prior``; returns ``x0`` in
    [-1, 1], ``[B, C, H, W]``.  Options not given come from the preset for
    ``(prior.name, task.name, method)``, then the method's defaults.  Pass one generator
    per image (``dmap.rng.sample_generators``) to make a batch equal to its images solved
    one by one."""
    opts = resolve_options(method, prior.name, task.name, steps=steps, **options)
    if tuple(task.operator.x_shape) != tuple(prior.shape):
        raise ValueError(f"task built for images {task.operator.x_shape}, prior expects {prior.shape}")
    return METHODS[method].fn(prior, task.operator, y, generator=generator, callback=callback, **opts)


__all__ = ["METHODS", "Method", "NonFiniteError", "presets", "project_to_sphere", "resolve_options", "solve",
           "solve_dmap", "solve_dps", "solve_dsg"]
