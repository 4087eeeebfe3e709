"""Step-size search on training images: coarse log grid, then refinement around the best.

What is searched comes from the method's options class (:mod:`dmap.solvers.base`): the
field declared ``tunable`` (its grid and refinement factors) and, for DMAP, the field
declared with ``choices`` (K).  Every trial runs through :func:`dmap.api.run_method`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from torch import Tensor

from dmap.api import run_method
from dmap.metrics import psnr
from dmap.operators.tasks import Task
from dmap.priors.base import Prior
from dmap.rng import sample_generators
from dmap.solvers import METHODS, Options, SolveError, get_method


def tunable() -> list[str]:
    """The methods with an option to search."""
    return [name for name, m in METHODS.items() if m.options.strength()]


def r3(v: float) -> float:
    """Three significant digits: the values tried are the values written down."""
    return float(f"{v:.3g}")


def evaluate(prior: Prior, task: Task, method: str, x: Tensor, y: Tensor, seed: int, options: Options, cse=None) -> float:
    """Mean PSNR of ``method`` with ``options`` on ``(x, y)``; -inf if it fails (NaN, divergence)."""
    try:
        out = run_method(method, prior, task, y, options, generator=sample_generators(seed, len(x)), cse=cse)
    except SolveError:
        return -math.inf
    return float(psnr(out, x).mean())


def tune(
    prior: Prior,
    task: Task,
    method: str,
    x: Tensor,
    y: Tensor,
    *,
    nfe: int = 1000,
    seed: int = 0,
    around: Options | None = None,
    log: Callable[[dict], None] | None = None,
    cse=None,
) -> tuple[Options, list[dict]]:
    """Search ``method``'s tunable option (and K for DMAP) at a budget of ``nfe`` network
    evaluations per image, maximizing the mean PSNR on ``(x, y)`` — which must be
    training images.  Returns the best options and every trial (options, nfe, psnr).

    Full search: the coarse log grid (widened by factors of 3 while the best lies at an
    edge), then each K choice for DMAP, then the refinements around the best.  With
    ``around`` (options of a preset, e.g. another prior's), a local search instead: the
    value times 1/3, 1 and 3, widened at an edge (K kept)."""
    m = get_method(method)
    key = m.options.strength()
    if key is None:
        raise ValueError(f"{method} has no step size to tune; tunable: {', '.join(tunable())}")
    meta = {f.name: f.metadata for f in dataclasses.fields(m.options)}
    k_key = next((name for name, md in meta.items() if "choices" in md), None)
    start = around or m.options()
    trials: list[tuple[Options, float]] = []

    def run(value: float, **extra) -> float:
        opts = start.replace(**{key: value}, **extra).for_budget(nfe)
        score = evaluate(prior, task, method, x, y, seed, opts, cse)
        trials.append((opts, score))
        if log is not None:
            log({**opts.to_dict(), "nfe": opts.nfe(), "psnr": score})
        return score

    def best() -> Options:
        return max(trials, key=lambda r: r[1])[0]

    def widen() -> None:
        """While the best value is the largest (smallest) tried, try 3 times larger
        (smaller), at most twice: the optimum may lie past the grid."""
        for _ in range(2):
            tried = [getattr(o, key) for o, _ in trials]
            top = getattr(best(), key)
            if top not in (min(tried), max(tried)):
                return
            run(r3(top * 3 if top == max(tried) else top / 3), **({k_key: getattr(best(), k_key)} if k_key else {}))

    if around is not None:
        for v in (r3(getattr(around, key) / 3), r3(getattr(around, key)), r3(getattr(around, key) * 3)):
            run(v)
        widen()
    else:
        for v in meta[key]["grid"]:
            run(v)
        widen()
        if k_key:
            center = best()
            for k in meta[k_key]["choices"]:
                if k != getattr(center, k_key):
                    run(getattr(center, key), **{k_key: k})
        center = best()
        for f in meta[key]["refine"]:
            run(r3(getattr(center, key) * f), **({k_key: getattr(center, k_key)} if k_key else {}))
    return best(), [{**o.to_dict(), "nfe": o.nfe(), "psnr": s} for o, s in trials]
