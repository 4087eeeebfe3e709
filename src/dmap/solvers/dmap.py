"""DMAP: explicit posterior maximization at every reverse step (Xu et al., ICLR 2025,
"Rethinking Diffusion Posterior Sampling", arXiv 2501.18913).

For ``t = tau_N .. tau_1`` (with ``t' = tau_{i-1}`` the next timestep)::

    mu, sigma_t = prior step at (x_t, t)                     (1 evaluation, no gradient)
    x           = mu + sigma_t z
    repeat K times:                                          (K evaluations with gradient)
        g  = grad_x ||y - A(x0_hat(x, t'))||                 (network at the next timestep)
        x* = x - zeta_i g                                    (zeta_i = zeta (t - t'), see StepSizeOptions)
        x  = mu + sqrt(n) sigma_t (x* - mu) / ||x* - mu||     (back onto the sphere where
                                                              p(x_{t'} | x_t) concentrates)
    x_{t'} = x

At the last step (``t' = -1``, ``sigma = 0``) the sphere is the single point ``mu``; we
return ``mu = x0_hat(x_{tau_1}, tau_1)`` without inner steps, so the cost is
``N + (N - 1) K`` evaluations.  With a ``step_prior`` (DMAP+CSE, Xu et al. 2025 Sec. 4)
the prior step uses ``step_prior``'s x0_hat; the inner steps keep ``prior``'s.
Argument names: zeta -> ``step_size``,
K -> ``inner_steps``, N -> ``steps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dmap.operators.base import Operator
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.solvers.base import Method, StepSizeOptions, choices, register
from dmap.solvers.common import Callback, check_state, measurement_grad, project_to_sphere

PAPER_INNER_STEPS = 3  # K of the paper's experiments (the authors' scripts)


@dataclass(frozen=True)
class DMAPOptions(StepSizeOptions):
    """``step_size`` (zeta, see :class:`StepSizeOptions`) and ``inner_steps`` (K) of the
    inner gradient ascent."""

    steps: int = 250
    inner_steps: int = choices(PAPER_INNER_STEPS, (1, 2, 3, 5))

    @property
    def inner(self) -> int:
        return self.inner_steps


def solve_dmap(
    prior: Prior,
    operator: Operator,
    y: Tensor,
    options: DMAPOptions = DMAPOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
    step_prior: Prior | None = None,
) -> Tensor:
    """Solve ``y = A(x) + n`` with DMAP; returns ``x0 [B, C, H, W]`` in [-1, 1].
    ``step_prior`` (default ``prior``) gives the x0_hat of the prior step."""
    steps, inner_steps, eta, clamp = options.steps, options.inner_steps, options.eta, options.clamp
    schedule = prior.schedule
    n = math.prod(prior.shape)
    x = randn((y.shape[0], *prior.shape), generator, y)
    for i, (t, t_prev) in enumerate(schedule.pairs(steps, options.spacing)):
        with torch.no_grad():
            x0_hat = (step_prior or prior).x0(x, t)
            mu, sigma = schedule.reverse_mean_std(x, x0_hat, t, t_prev, eta)
            x = mu + sigma * randn(x.shape, generator, x)
        info, zeta = {}, options.zeta(t, t_prev)
        if t_prev >= 0:
            radius = math.sqrt(n) * sigma
            for _ in range(inner_steps):
                x = x.detach().requires_grad_(True)
                g, residual = measurement_grad(x, prior.x0(x, t_prev), operator, y, clamp)
                with torch.no_grad():
                    x = project_to_sphere(x - zeta * g, mu, radius)
                info = {"residual": residual, "grad_norm": g.reshape(len(g), -1).norm(dim=1)}
        x = x.detach()
        check_state(x, "dmap", i, t, options.step_size)
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "x0_hat": x0_hat, **info})
    return prior.clip(x)


register(Method("dmap", solve_dmap, DMAPOptions, "posterior maximization with sphere projection (Xu et al. 2025)"))
