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


def evaluate(
    prior: Prior, task: Task, method: str, x: Tensor, y: Tensor, seed: int, options: Options, cse=None, offset: int = 0
) -> list[float]:
    """PSNR of ``method`` with ``options`` on each image of ``(x, y)`` (sampler streams
    ``offset ..`` of ``seed``); -inf for each if it fails (NaN, divergence)."""
    try:
        out = run_method(method, prior, task, y, options, generator=sample_generators(seed, len(x), offset), cse=cse)
    except SolveError:
        return [-math.inf] * len(x)
    return psnr(out, x).tolist()


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
    fixed: dict | None = None,
    log: Callable[[dict], None] | None = None,
    cse=None,
) -> tuple[Options, list[dict]]:
    """Search ``method``'s tunable option (and K for DMAP unless ``fixed`` sets it) at a
    budget of ``nfe`` network evaluations per image, maximizing the mean PSNR on ``(x, y)``
    — which must be training images.  With several budgets, one setting for all of them:
    each trial runs at every budget and scores the mean PSNR over them (-inf if it fails
    at any), and the options returned carry the steps of the largest budget.  ``fixed``
    (e.g. ``{"inner_steps": 3}``) holds options every trial keeps.  Returns the best
    options and every trial (options, nfe, psnr; per budget and per image when several).

    Full search: the coarse log grid (widened by factors of 3 while the best lies at an
    edge, at most twice), then each K choice for DMAP (K free), then the refinements
    around the best.  With ``around`` (options of a preset, e.g. another prior's), a
    local search instead: the value times 1/3, 1 and 3, widened at an edge (K kept)."""
    m = get_method(method)
    key = m.options.strength()
    if key is None:
        raise ValueError(f"{method} has no step size to tune; tunable: {', '.join(tunable())}")
    meta = {f.name: f.metadata for f in dataclasses.fields(m.options)}
    fixed = dict(fixed or {})
    k_key = next((name for name in m.options.keyed() if name not in fixed), None)
    budgets = (nfe,) if isinstance(nfe, int) else tuple(nfe)
    score = lambda opts: evaluate(prior, task, method, x, y, seed, opts, cse)  # noqa: E731
    search = _Search(score, (around or m.options()).replace(**fixed), key, k_key, budgets, log)
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
    where given) on ``start``, each scored by ``score(options)`` (PSNR per image) at every budget."""

    def __init__(self, score, start: Options, key: str, k_key: str | None, budgets: tuple[int, ...], log) -> None:
        self.score, self.start, self.key, self.k_key, self.budgets, self.log = score, start, key, k_key, budgets, log
        self.trials: list[tuple[Options, float]] = []
        self.logged: list[dict] = []

    def run(self, value: float, **extra) -> float:
        """Mean PSNR of one setting over the budgets (-inf if it fails at any)."""
        chosen = self.start.replace(**{self.key: value}, **extra)
        per_image = [self.score(chosen.for_budget(n)) for n in self.budgets]
        scores = [sum(p) / len(p) for p in per_image]
        opts, score = chosen.for_budget(max(self.budgets)), sum(scores) / len(scores)
        self.trials.append((opts, score))
        record = {**opts.to_dict(), "nfe": opts.nfe(), "psnr": score}
        if len(self.budgets) > 1:
            record.update(nfe=[chosen.for_budget(n).nfe() for n in self.budgets], psnr_per_budget=scores, psnr_per_image=per_image)
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


def paired_se(a: list[float], b: list[float]) -> float:
    """Standard error of the mean of ``a - b`` (paired per image; inf if either failed)."""
    d = [u - v for u, v in zip(a, b)]
    if not all(math.isfinite(v) for v in d):
        return math.inf
    mean = sum(d) / len(d)
    return math.sqrt(sum((v - mean) ** 2 for v in d) / max(len(d) - 1, 1) / len(d))


def per_budget(trials: list[dict]) -> list[dict]:
    """Of ``trials`` run at several budgets (same K), the trial used at each budget: the
    best over all budgets unless another trial beats it at that budget by more than the
    standard error of their paired difference on the tuning images — on a handful of
    images a lone best would be chance as often as not, and would make the strength jump
    from budget to budget."""
    joint = max(trials, key=lambda t: t["psnr"])
    chosen = []
    for j in range(len(joint["psnr_per_budget"])):
        top = max(trials, key=lambda t: t["psnr_per_budget"][j])
        gain = top["psnr_per_budget"][j] - joint["psnr_per_budget"][j]
        chosen.append(top if gain > paired_se(top["psnr_per_image"][j], joint["psnr_per_image"][j]) else joint)
    return chosen


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
    fixed: dict | None = None,
    log: Callable[[dict], None] | None = None,
    cse=None,
) -> tuple[Options, list[dict], dict[int, float | list]]:
    """:func:`tune` at several budgets, then the strength at each: the one setting with the
    best mean PSNR over ``nfe`` (options at the largest budget), the trials, and ``{steps:
    strength}`` for the steps of each budget from the same trials (:func:`per_budget`), so
    that every budget is tuned with the same trials.  A budget is a cap: where the setting
    of a smaller budget scored higher than this budget's best by more than the standard
    error of their paired difference, the entry is ``[strength, steps]`` of that smaller
    budget (its fewer steps), so that the presets' PSNR does not fall as the budget grows.
    A preset with this table (``by_steps``) uses it for the steps a run's budget gives
    (:func:`dmap.presets.at_steps`)."""
    best, trials = tune(prior, task, method, x, y, nfe=nfe, seed=seed, around=around, fixed=fixed, log=log, cse=cse)
    kept = [t for t in trials if all(t.get(k) == getattr(best, k) for k in best.keyed())]
    return best, trials, budget_table(kept, best.strength(), [best.for_budget(n).steps for n in nfe])


def falls(per_image: list[list[float]], allowance: float = 1.0) -> list[int]:
    """For budgets in ascending order and the PSNR of each image at each, the budget whose
    setting each one runs: itself, or — where its mean PSNR is below that of the last
    budget not fallen by more than ``allowance`` standard errors of their paired
    difference, or it failed — that budget (more evaluations must not score worse)."""
    used, serve = 0, []
    for j, scores in enumerate(per_image):
        here, there = sum(scores) / len(scores), sum(per_image[used]) / len(per_image[used])
        if math.isfinite(here) and here >= there - allowance * paired_se(scores, per_image[used]):
            used = j
        serve.append(used)
    return serve


def budget_table(trials: list[dict], key: str, steps: list[int]) -> dict[int, float | list]:
    """``{steps: strength or [strength, fewer steps]}`` from ``trials`` run at budgets of
    ``steps`` steps (ascending): each budget's trial (:func:`per_budget`), or the one of
    the last budget not capped where that scored higher on the tuning images, at its own
    budget, by more than the standard error of their paired difference (:func:`falls`)."""
    chosen = per_budget(trials)
    serve = falls([t["psnr_per_image"][j] for j, t in enumerate(chosen)])
    return {n: chosen[j][key] if serve[j] == j else [chosen[serve[j]][key], steps[serve[j]]] for j, n in enumerate(steps)}


def check_runs(options: Options, by_steps: dict, nfe: tuple[int, ...]) -> list[Options]:
    """The preset (``options``, its entry at the largest budget, and its table ``by_steps``)
    as a run of each budget of ``nfe`` (ascending) runs it (:func:`dmap.presets.at_steps`)."""
    from dmap.presets import at_steps

    table = {int(k): v for k, v in by_steps.items()}
    budgets = [options.for_budget(n) for n in nfe]
    return [b.replace(**dict(zip(("steps", options.strength()), at_steps(table, b.steps)))) for b in budgets]


CHECK_ALLOWANCE = 0.0
"""The check caps any fall of the validation mean (0 standard errors): on validation digits
it left 9 held-out falls in 140 halves against 21 for a one-SE allowance, at no cost in
PSNR (``benchmarks/check_rule.py``, docs/presets.md)."""


def capped(
    options: Options, by_steps: dict, nfe: tuple[int, ...], scores: list[list[float]], allowance: float = CHECK_ALLOWANCE
) -> dict[int, float | list]:
    """``by_steps`` checked by ``scores``, the PSNR of each validation image under each run
    of :func:`check_runs`: where a budget's mean PSNR falls below that of the last budget
    not fallen by more than ``allowance`` standard errors of their paired difference
    (:func:`falls`; :data:`CHECK_ALLOWANCE`: any fall), its entry becomes that budget's
    ``[strength, steps]``, a cap."""
    runs, table = check_runs(options, by_steps, nfe), {int(k): v for k, v in by_steps.items()}
    for j, (n, used) in enumerate(zip(nfe, falls(scores, allowance))):
        if used != j:
            table[options.for_budget(n).steps] = [getattr(runs[used], options.strength()), runs[used].steps]
    return table


def check_budgets(
    prior: Prior,
    task: Task,
    method: str,
    x: Tensor,
    y: Tensor,
    options: Options,
    by_steps: dict,
    nfe: tuple[int, ...],
    *,
    seed: int = 0,
    offset: int = 0,
    cse=None,
) -> tuple[dict[int, float | list], list[list[float]]]:
    """A tuned budget table checked on other images ``(x, y)`` — validation digits, never
    test ones: the preset (``options``, the entry at the largest budget, and its table
    ``by_steps``) runs at each budget of ``nfe`` (ascending) as a run of that budget does
    (:func:`check_runs`); where a budget scores below the last budget not fallen, its entry
    becomes that budget's ``[strength, steps]``, a cap (:func:`capped`).  Returns the checked
    table and the PSNR of each image at each budget (sampler streams ``offset ..`` of ``seed``)."""
    scores = [evaluate(prior, task, method, x, y, seed, o, cse, offset) for o in check_runs(options, by_steps, nfe)]
    return capped(options, by_steps, nfe, scores), scores
