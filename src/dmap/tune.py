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
    nfe: int | tuple[int, ...] = 1000,
    seed: int = 0,
    around: Options | None = None,
    log: Callable[[dict], None] | None = None,
    cse=None,
) -> tuple[Options, list[dict]]:
    """Search ``method``'s tunable option (and K for DMAP) at a budget of ``nfe`` network
    evaluations per image, maximizing the mean PSNR on ``(x, y)`` — which must be
    training images.  With several budgets, one setting for all of them: each trial runs
    at every budget and scores the mean PSNR over them (-inf if it fails at any), and the
    options returned carry the steps of the largest budget.  Returns the best options and
    every trial (options, nfe, psnr; per budget when several).

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
    budgets = (nfe,) if isinstance(nfe, int) else tuple(nfe)
    score = lambda opts: evaluate(prior, task, method, x, y, seed, opts, cse)  # noqa: E731
    search = _Search(score, around or m.options(), key, k_key, budgets, log)
    if around is not None:
        for v in (r3(getattr(around, key) / 3), r3(getattr(around, key)), r3(getattr(around, key) * 3)):
            search.run(v)
        search.widen()
        return search.best(), search.logged
    for v in meta[key]["grid"]:
        search.run(v)
    search.widen()
    if k_key:
        center = search.best()
        for k in meta[k_key]["choices"]:
            if k != getattr(center, k_key):
                search.run(getattr(center, key), **{k_key: k})
    center = search.best()
    for f in meta[key]["refine"]:
        search.run(r3(getattr(center, key) * f), **search.kept(center))
    return search.best(), search.logged


class _Search:
    """The trials of one :func:`tune` run: ``key`` set to a value (and ``k_key``, DMAP's K,
    where given) on ``start``, each scored by ``score(options)`` at every budget."""

    def __init__(self, score, start: Options, key: str, k_key: str | None, budgets: tuple[int, ...], log) -> None:
        self.score, self.start, self.key, self.k_key, self.budgets, self.log = score, start, key, k_key, budgets, log
        self.trials: list[tuple[Options, float]] = []
        self.logged: list[dict] = []

    def run(self, value: float, **extra) -> float:
        """Mean PSNR of one setting over the budgets (-inf if it fails at any)."""
        chosen = self.start.replace(**{self.key: value}, **extra)
        scores = [self.score(chosen.for_budget(n)) for n in self.budgets]
        opts, score = chosen.for_budget(max(self.budgets)), sum(scores) / len(scores)
        self.trials.append((opts, score))
        record = {**opts.to_dict(), "nfe": opts.nfe(), "psnr": score}
        if len(self.budgets) > 1:
            record.update(nfe=[chosen.for_budget(n).nfe() for n in self.budgets], psnr_per_budget=scores)
        self.logged.append(record)
        if self.log is not None:
            self.log(record)
        return score

    def best(self) -> Options:
        return max(self.trials, key=lambda r: r[1])[0]

    def kept(self, options: Options) -> dict:
        """``{k_key: K of options}`` (empty without a K): what a refinement keeps."""
        return {self.k_key: getattr(options, self.k_key)} if self.k_key else {}

    def widen(self) -> None:
        """While the best value is the largest (smallest) tried, try 3 times larger
        (smaller), at most twice: the optimum may lie past the grid."""
        for _ in range(2):
            tried = [getattr(o, self.key) for o, _ in self.trials]
            top = getattr(self.best(), self.key)
            if top not in (min(tried), max(tried)):
                return
            self.run(r3(top * 3 if top == max(tried) else top / 3), **self.kept(self.best()))


def tune_budgets(
    prior: Prior,
    task: Task,
    method: str,
    x: Tensor,
    y: Tensor,
    *,
    nfe: tuple[int, ...],
    seed: int = 0,
    around: Options | None = None,
    log: Callable[[dict], None] | None = None,
    cse=None,
) -> tuple[Options, list[dict], dict[int, float]]:
    """:func:`tune` at several budgets, then the best strength at each: the one setting with
    the best mean PSNR over ``nfe`` (options at the largest budget), the trials, and
    ``{steps: strength}`` for the steps of each budget, from the same trials, widened at
    that budget alone (x3 or /3, at most twice) while its best lies at an edge of the
    values tried.  A preset with this table (``by_steps``) uses the strength for the steps
    a run takes (:func:`dmap.presets.strength_at`)."""
    best, trials = tune(prior, task, method, x, y, nfe=nfe, seed=seed, around=around, log=log, cse=cse)
    key = get_method(method).options.strength()
    by_steps = {}
    for j, n in enumerate(nfe):
        scores = {t[key]: t["psnr_per_budget"][j] for t in trials if "budget_only" not in t}
        for _ in range(2):
            top = max(scores, key=scores.get)
            if top not in (min(scores), max(scores)) or len(scores) < 2:
                break
            value = r3(top * 3 if top == max(scores) else top / 3)
            opts = best.replace(**{key: value}).for_budget(n)
            scores[value] = evaluate(prior, task, method, x, y, seed, opts, cse)
            record = {**opts.to_dict(), "nfe": opts.nfe(), "psnr": scores[value], "budget_only": n}
            trials.append(record)
            if log is not None:
                log(record)
        by_steps[best.for_budget(n).steps] = max(scores, key=scores.get)
    return best, trials, by_steps
