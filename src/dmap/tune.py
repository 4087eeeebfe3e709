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


def tunable() -> list[str]:
    """The methods with a step size to search."""
    return [name for name, m in METHODS.items() if (m.base or name) in SEARCH]


def r3(v: float) -> float:
    """Three significant digits: the values tried are the values written down."""
    return float(f"{v:.3g}")


def evaluate(prior: Prior, task: Task, method: str, x: Tensor, y: Tensor, seed: int, options: dict) -> float:
    """Mean PSNR of ``method`` with ``options`` on ``(x, y)``; -inf if it diverges.
    (Options may include ``cse`` for the methods that take one.)"""
    try:
        out = METHODS[method].fn(prior, task.operator, y, generator=sample_generators(seed, len(x)), **options)
    except NonFiniteError:
        return -math.inf
    return float(psnr(out, x).mean())


def tune(
    prior: Prior, task: Task, method: str, x: Tensor, y: Tensor, *, nfe: int = 1000, seed: int = 0,
    around: dict | None = None, log: Callable[[dict], None] | None = None, cse=None,
) -> tuple[dict, list[dict]]:
    """Search ``method``'s step size (and K for DMAP) at a budget of ``nfe`` network
    evaluations per image, maximizing the mean PSNR on ``(x, y)`` — which must be
    training images.  Returns the best options and every trial.

    Full search: the coarse log grid of ``SEARCH`` (widened by factors of 3 while the
    best lies at an edge), then K in ``DMAP_INNER_STEPS`` for DMAP, then two
    refinements around the best.  With ``around`` (options of a preset,
    e.g. another prior's), a local search instead: the step size times 1/3, 1 and 3,
    extended by factors of 3 while the best lies at an edge (K kept).  The cse methods
    search like their base method and need the estimator ``cse``."""
    m = METHODS[method]
    if (m.base or method) not in SEARCH:
        raise ValueError(f"{method} has no step size to tune; tunable: {', '.join(tunable())}")
    key, coarse, refine = SEARCH[m.base or method]
    has_k = "inner_steps" in m.defaults
    trials: list[dict] = []

    def run(value: float, **extra) -> float:
        opts = resolve_options(method, "", "", **{key: value}, **extra)
        opts["steps"] = m.steps_for(nfe, opts)
        score = evaluate(prior, task, method, x, y, seed, {**opts, **({"cse": cse} if m.uses_cse else {})})
        trials.append({**opts, "nfe": m.nfe(opts), "psnr": score})
        if log is not None:
            log(trials[-1])
        return score

    def best() -> dict:
        return max(trials, key=lambda r: r["psnr"])

    def widen(extra: dict) -> None:
        """While the best value is the largest (smallest) tried, try 3 times larger
        (smaller), at most twice: the optimum may lie past the grid."""
        for _ in range(2):
            tried = [t[key] for t in trials]
            top = best()[key]
            if top not in (min(tried), max(tried)):
                return
            run(r3(top * 3 if top == max(tried) else top / 3), **extra)

    if around is not None:
        extra = {"inner_steps": around["inner_steps"]} if has_k else {}
        for v in (r3(around[key] / 3), r3(around[key]), r3(around[key] * 3)):
            run(v, **extra)
        widen(extra)
    else:
        for v in coarse:
            run(v)
        widen({})
        if has_k:
            center = best()
            for k in DMAP_INNER_STEPS:
                if k != center["inner_steps"]:
                    run(center[key], inner_steps=k)
        center = best()
        extra = {"inner_steps": center["inner_steps"]} if has_k else {}
        for f in refine:
            run(r3(center[key] * f), **extra)
    return {k: v for k, v in best().items() if k in ("steps", key, "inner_steps")}, trials


TASK_SEED = 0  # masks, kernels and permutations: the seed the benchmarks use


def train_images(n: int) -> Tensor:
    """The tuning images: ``n`` train digits drawn with a fixed seed (never the test split)."""
    import torch

    from dmap.data import mnist
    from dmap.rng import seeded

    train, _ = mnist("train")
    return train[torch.randperm(len(train), generator=seeded(1234))[:n]]


def tuning_problem(prior: Prior, task_name: str, n: int) -> tuple[Task, Tensor, Tensor]:
    """The task (operator from ``TASK_SEED``), ``n`` train digits and their measurements."""
    from dmap.operators import make_task
    from dmap.rng import seeded

    x = train_images(n)
    task = make_task(task_name, prior.shape, generator=seeded(TASK_SEED))
    return task, x, task.simulate(x, generator=sample_generators(TASK_SEED + 1, n))


def write_preset(path, prior: str, task: str, method: str, options: dict, note: str) -> None:
    """Add (or replace) the preset for (prior, task, method) in the preset file ``path``
    (created if missing; ``{"notes": {...}, "presets": {prior: {task: {method: options}}}}``),
    with ``note`` saying how it was made."""
    import json
    import os
    from pathlib import Path

    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(data, dict) or not isinstance(data.setdefault("presets", {}), dict):
        raise ValueError(f"{path}: not a preset file")
    data["presets"].setdefault(prior, {}).setdefault(task, {})[method] = options
    data.setdefault("notes", {})[f"{prior}/{task}/{method}"] = note
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
