"""``dmap.solve``: resolve a method's options, then run it (the CLI, ``tune`` and
``bench`` all call these two functions)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dmap.cse import CSE
from dmap.operators.base import SVDOperator
from dmap.operators.noise import GaussianNoise
from dmap.operators.physics import Physics
from dmap.operators.tasks import Task
from dmap.presets import Table, resolve_options
from dmap.priors.base import Prior
from dmap.rng import Generators
from dmap.solvers import Options, get_method
from dmap.solvers.common import Callback
from dmap.utils import torch_threads


def unsuited(method: str, task: Task, options: Options | None = None, prior: Prior | None = None) -> str | None:
    """Why ``method`` cannot solve ``task`` (what its options class ``needs`` of the
    measurement: a linear operator, an SVD, Gaussian noise, a conditional score estimator)
    or, given ``options`` and ``prior``, cannot take that many steps on the prior's
    schedule; None if it can.  The one check behind ``run_method``, the CLI and ``bench``."""
    if options is not None and prior is not None:
        try:
            options.grid(prior.schedule)
        except ValueError as e:
            return f"{method}: {e} (the prior's schedule has {prior.schedule.T} steps)"
    needs = get_method(method).options.needs
    gaussian = isinstance(task.noise, GaussianNoise)
    if prior is not None and prior.latent and {"linear", "svd"} & set(needs):
        return f"{method} needs a linear operator; on the latent prior {prior.name} the likelihood goes through the decoder"
    if {"linear", "svd", "cse"} & set(needs) and not task.operator.linear:
        return f"{method} needs a linear task; {task.name} is not"
    if "svd" in needs and not isinstance(task.operator, SVDOperator):
        return f"{method} needs an operator with an SVD (e.g. inpaint-box, inpaint-random, sr4, cs2); {task.name} has none"
    if "gaussian" in needs and not gaussian:
        return f"{method} needs Gaussian noise"
    if "cse" in needs and not gaussian:
        return f"{method}: the conditional score estimators are trained for Gaussian noise"
    return None


def run_method(
    method: str,
    prior: Prior,
    task: Task,
    y: Tensor,
    options: Options,
    *,
    generator: Generators = None,
    callback: Callback = None,
    cse: CSE | None = None,
) -> Tensor:
    """Run ``method`` with resolved ``options`` (from :func:`dmap.presets.resolve_options`):
    wrap, then call its sampler ``fn(denoiser, physics, y, grid, options, ...)``.  The
    denoiser is the prior, or for the CSE methods the prior conditioned by ``cse`` (default:
    the shipped one for the prior and task, checked against the task's ``sigma_y``); the
    physics is the task's operator and noise model (:class:`~dmap.operators.physics.Physics`),
    on a latent prior seen through its decoder, so the sampler returns images; the grid
    comes from the options.  A run that produces NaN/Inf or leaves the data range raises
    :class:`~dmap.solvers.SolveError` (:class:`~dmap.solvers.NonFiniteError`,
    :class:`~dmap.solvers.DivergenceError`)."""
    m = get_method(method)
    if not isinstance(options, m.options):
        raise TypeError(f"{method} takes {m.options.__name__}, got {type(options).__name__}")
    if tuple(task.operator.x_shape) != tuple(prior.image_shape):
        raise ValueError(f"task built for images {task.operator.x_shape}, prior expects {prior.image_shape}")
    reason = unsuited(method, task, options, prior)
    if reason:
        raise ValueError(reason)
    denoiser = prior
    if m.uses_cse:
        if cse is None:  # the shipped one (the catalogue sits above the algorithms: imported on use)
            from dmap.catalogue import find_cse

            cse = find_cse(prior, task.name, sigma_y=task.sigma_y)
        cse.check(prior, task.name, task.sigma_y)
        denoiser = cse.denoiser(task.operator, y, options.guide)
    elif cse is not None:
        raise ValueError(f"{method} takes no conditional score estimator")
    physics, y = Physics.of(task, y, prior.decode if prior.latent else None)
    return m.fn(denoiser, physics, y, options.grid(prior.schedule), options, generator=generator, callback=callback)


def solve(
    method: str,
    prior: Prior,
    task: Task,
    y: Tensor,
    *,
    generator: Generators = None,
    callback: Callback = None,
    cse: CSE | None = None,
    presets: Table | None = None,
    nfe: int | None = None,
    threads: int | None = 1,
    **options: Any,
) -> Tensor:
    """Restore ``x`` from ``y = A(x) + n`` with ``method`` on ``prior``; returns ``x0`` in
    [-1, 1], ``[B, C, H, W]``.  Options not given (``steps=``, ``step_size=``, ...) come
    from the preset for ``(prior.name, task.name, method)`` and the task's noise regime in ``presets`` (default: the
    shipped ones, :func:`dmap.presets.load_presets`), then the method's defaults; ``nfe``
    sets the budget in network evaluations per image instead of ``steps``.  Pass
    one generator per image (``dmap.rng.sample_generators``) to make a batch equal to its
    images solved one by one.  ``threads``: torch CPU threads while solving (default 1,
    as the CLI: on the shipped 32 x 32 priors extra threads gain little on an idle machine
    and lose several-fold on a busy one, ``benchmarks/api_threads.py``; ``None`` keeps
    torch's setting, e.g. for large images on a CPU).  See :func:`run_method` for ``cse``
    and the errors."""
    opts = resolve_options(method, prior.name, task.name, presets=presets, nfe=nfe, sigma_y=task.sigma_y, **options)
    with torch_threads(threads):
        return run_method(method, prior, task, y, opts, generator=generator, callback=callback, cse=cse)
