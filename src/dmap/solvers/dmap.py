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
``N + (N - 1) K`` evaluations.  When the denoiser's prior step is another model
(DMAP+CSE, Xu et al. 2025 Sec. 4: the conditional score estimator), the prior step uses
that model's x0_hat; the inner steps keep the denoiser's own.
Argument names: zeta -> ``step_size``,
K -> ``inner_steps``, N -> ``steps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.schedule import step_pairs
from dmap.solvers.base import Method, StepSizeOptions, choices, register
from dmap.solvers.common import Callback, check_state, measurement_grad, project_to_sphere

PAPER_INNER_STEPS = 3  # K of the paper's experiments (the authors' scripts)


@dataclass(frozen=True)
class DMAPOptions(StepSizeOptions):
    """``step_size`` (zeta, see :class:`StepSizeOptions`) and ``inner_steps`` (K) of the
    inner gradient ascent."""

    steps: int = 250
    inner_steps: int = choices(PAPER_INNER_STEPS, (1, 2, 3, 5))

    paper_protocol: ClassVar[dict[str, Any]] = {"inner_steps": PAPER_INNER_STEPS}

    @property
    def inner(self) -> int:
        return self.inner_steps


def solve_dmap(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: DMAPOptions = DMAPOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Solve ``y = A(x) + n`` with DMAP along the time ``grid``; returns the images
    ``[B, C, H, W]`` in [-1, 1]."""
    inner_steps, eta, clamp = options.inner_steps, options.eta, options.clamp
    schedule = denoiser.schedule
    n = math.prod(denoiser.shape)
    x = randn((y.shape[0], *denoiser.shape), generator, y)
    for i, (t, t_prev) in enumerate(step_pairs(grid)):
        with torch.no_grad():
            x0_hat = denoiser.prior_step.x0(x, t)
            mu, sigma = schedule.reverse_mean_std(x, x0_hat, t, t_prev, eta)
            x = unguided = mu + sigma * randn(x.shape, generator, x)
        info, zeta = {}, options.zeta(t, t_prev)
        if t_prev >= 0:
            radius = math.sqrt(n) * sigma
            for _ in range(inner_steps):
                x = x.detach().requires_grad_(True)
                g, residual = measurement_grad(x, denoiser.x0(x, t_prev), physics, y, clamp)
                with torch.no_grad():
                    x = project_to_sphere(x - zeta * g, mu, radius)
                info = {"residual": residual, "grad_norm": g.reshape(len(g), -1).norm(dim=1)}
        x = x.detach()
        check_state(x, "dmap", i, t, options.step_size, unguided)
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "x0_hat": x0_hat, **info})
    return physics.image(x)


register(Method("dmap", solve_dmap, DMAPOptions, "posterior maximization with sphere projection (Xu et al. 2025)"))
