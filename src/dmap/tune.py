"""Step-size search on training images: coarse log grid, then refinement around the best."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

from dmap.metrics import psnr
from dmap.operators.tasks import Task
from dmap.priors.base import Prior
from dmap.rng import sample_generators
from dmap.solvers import METHODS, NonFiniteError, resolve_options

# the option searched per method, its coarse grid and the refinement factors
SEARCH: dict[str, tuple[str, list[float], list[float]]] = {
    "dps": ("step_size", [0.1, 0.3, 1.0, 3.0, 10.0], [0.58, 1.73]),
    "dmap": ("step_size", [0.1, 0.3, 1.0, 3.0, 10.0], [0.58, 1.73]),
    "dsg": ("guidance_rate", [0.05, 0.1, 0.2, 0.4, 0.8], [0.71, 1.41]),
}
DMAP_INNER_STEPS = [1, 2, 3, 5]


def r3(v: float) -> float:
    """Three significant digits: the values tried are the values written down."""
    return float(f"{v:.3g}")


def evaluate(prior: Prior, task: Task, method: str, x: Tensor, y: Tensor, seed: int, options: dict) -> float:
    """Mean PSNR of ``method`` with ``options`` on ``(x, y)``; -inf if it diverges."""
    try:
        out = METHODS[method].fn(prior, task.operator, y, generator=sample_generators(seed, len(x)), **options)
    except NonFiniteError:
        return -math.inf
    return float(psnr(out, x).mean())


def tune(
    prior: Prior, task: Task, method: str, x: Tensor, y: Tensor, *, nfe: int = 1000, seed: int = 0,
    around: dict | None = None, log: Callable[[dict], None] | None = None,
) -> tuple[dict, list[dict]]:
    """Search ``method``'s step size (and K for DMAP) at a budget of ``nfe`` network
    evaluations per image, maximizing the mean PSNR on ``(x, y)`` — which must be
    training images.  Returns the best options and every trial.

    Full search: the coarse log grid of ``SEARCH``, then K in ``DMAP_INNER_STEPS`` for
    DMAP, then two refinements around the best.  With ``around`` (options of a preset,
    e.g. another prior's), a local search instead: the step size times 1/3, 1 and 3,
    extended by factors of 3 while the best lies at an edge (K kept)."""
    key, coarse, refine = SEARCH[method]
    m = METHODS[method]
    trials: list[dict] = []

    def run(value: float, **extra) -> float:
        opts = resolve_options(method, "", "", **{key: value}, **extra)
        opts["steps"] = m.steps_for(nfe, opts)
        score = evaluate(prior, task, method, x, y, seed, opts)
        trials.append({**opts, "nfe": m.nfe(opts), "psnr": score})
        if log is not None:
            log(trials[-1])
        return score

    def best() -> dict:
        return max(trials, key=lambda r: r["psnr"])

    if around is not None:
        extra = {"inner_steps": around["inner_steps"]} if method == "dmap" else {}
        grid = [r3(around[key] / 3), r3(around[key]), r3(around[key] * 3)]
        for v in grid:
            run(v, **extra)
        for _ in range(2):
            top = best()[key]
            if top not in (min(grid), max(grid)):
                break
            grid.append(r3(top * 3 if top == max(grid) else top / 3))
            run(grid[-1], **extra)
        return {k: v for k, v in best().items() if k in ("steps", key, "inner_steps")}, trials
    for v in coarse:
        run(v)
    if method == "dmap":
        center = best()
        for k in DMAP_INNER_STEPS:
            if k != center["inner_steps"]:
                run(center[key], inner_steps=k)
    center = best()
    extra = {"inner_steps": center["inner_steps"]} if method == "dmap" else {}
    for f in refine:
        run(r3(center[key] * f), **extra)
    chosen = {k: v for k, v in best().items() if k in ("steps", key, "inner_steps")}
    return chosen, trials
