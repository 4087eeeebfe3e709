"""``dmap.solve``: resolve a method's options, then run it (the CLI, ``tune`` and
``bench`` all call these two functions)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dmap.cse import CSE, find_cse
from dmap.operators.base import SVDOperator
from dmap.operators.noise import GaussianNoise
from dmap.operators.tasks import Task
from dmap.presets import Table, resolve_options
from dmap.priors.base import Prior
from dmap.priors.latent import ThroughDecoder
from dmap.rng import Generators
from dmap.solvers import Options, get_method
from dmap.solvers.common import Callback
from dmap.utils import torch_threads


def unsuited(method: str, task: Task, options: Options | None = None, prior: Prior | None = None) -> str | None:
    """Why ``method`` cannot solve ``task`` (a nonlinear operator for a linear-only method,
    no SVD for DDRM, non-Gaussian noise where the method needs it) or, given ``options``
    and ``prior``, cannot take that many steps on the prior's schedule; None if it can.
    The one check behind ``run_method``, the CLI and ``bench``."""
    if options is not None and prior is not None:
        try:
            prior.schedule.timesteps(options.steps, options.spacing)
        except ValueError as e:
            return f"{method}: {e} (the prior's schedule has {prior.schedule.T} steps)"
    m = get_method(method)
    if prior is not None and prior.latent and m.linear_only and not m.uses_cse:  # the estimator conditions on y itself
        return f"{method} needs a linear operator; on the latent prior {prior.name} the likelihood goes through the decoder"
    if m.linear_only and not task.operator.linear:
        return f"{method} needs a linear task; {task.name} is not"
    if m.needs_svd and not isinstance(task.operator, SVDOperator):
        return f"{method} needs an operator with an SVD (e.g. inpaint-box, inpaint-random, sr4, cs2); {task.name} has none"
    if m.needs_svd and not isinstance(task.noise, GaussianNoise):
        return f"{method} needs Gaussian noise"
    if m.uses_cse and not isinstance(task.noise, GaussianNoise):
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
    """Run ``method`` with resolved ``options`` (from :func:`dmap.presets.resolve_options`).
    Methods with a conditional score estimator take ``cse`` (default: the shipped one for
    the prior and task, checked against the task's ``sigma_y``).  A run that produces
    NaN/Inf or leaves the data range raises :class:`~dmap.solvers.SolveError`
    (:class:`~dmap.solvers.NonFiniteError`, :class:`~dmap.solvers.DivergenceError`).
    On a latent prior the method runs in its space on ``A(D(z))`` (:class:`ThroughDecoder`)
    and the images ``D(z)`` are returned."""
    m = get_method(method)
    if not isinstance(options, m.options):
        raise TypeError(f"{method} takes {m.options.__name__}, got {type(options).__name__}")
    if tuple(task.operator.x_shape) != tuple(prior.image_shape):
        raise ValueError(f"task built for images {task.operator.x_shape}, prior expects {prior.image_shape}")
    reason = unsuited(method, task, options, prior)
    if reason:
        raise ValueError(reason)
    extra = {}
    if m.uses_cse:
        if cse is None:
            cse = find_cse(prior, task.name, sigma_y=task.sigma_y)
        cse.check(prior, task.name, task.sigma_y)
        extra["cse"] = cse
    elif cse is not None:
        raise ValueError(f"{method} takes no conditional score estimator")
    if m.uses_noise:
        extra["sigma_y"] = task.noise.whitened_std(y)
    operator, y = task.noise.whiten(task.operator, y)  # the data term of the noise model
    if not prior.latent:
        return m.fn(prior, operator, y, options, generator=generator, callback=callback, **extra)
    clamp = getattr(options, "clamp", True)  # on a latent prior x0_hat is clipped in pixels, after D
    operator = ThroughDecoder(operator, prior, clamp)
    options = options.replace(clamp=False) if hasattr(options, "clamp") else options
    z = m.fn(prior, operator, y, options, generator=generator, callback=callback, **extra)
    with torch.no_grad():
        return prior.decode(z).clamp(-1, 1)


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
    from the preset for ``(prior.name, task.name, method)`` in ``presets`` (default: the
    shipped ones, :func:`dmap.presets.load_presets`), then the method's defaults; ``nfe``
    sets the budget in network evaluations per image instead of ``steps``.  Pass
    one generator per image (``dmap.rng.sample_generators``) to make a batch equal to its
    images solved one by one.  ``threads``: torch CPU threads while solving (default 1,
    as the CLI: on the shipped 32 x 32 priors extra threads gain little on an idle machine
    and lose several-fold on a busy one, ``benchmarks/api_threads.py``; ``None`` keeps
    torch's setting, e.g. for large images on a CPU).  See :func:`run_method` for ``cse``
    and the errors."""
    opts = resolve_options(method, prior.name, task.name, presets=presets, nfe=nfe, **options)
    with torch_threads(threads):
        return run_method(method, prior, task, y, opts, generator=generator, callback=callback, cse=cse)
