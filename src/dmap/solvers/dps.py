"""Diffusion Posterior Sampling (Chung et al., ICLR 2023, arXiv 2209.14687, Alg. 1).

For ``t = tau_N .. tau_1``::

    x0_hat   = (x_t - sqrt(1 - ab_t) eps(x_t, t)) / sqrt(ab_t)
    g        = grad_{x_t} ||y - A(x0_hat)||                 (per sample)
    x'_prev  = mu(x_t, x0_hat) + sigma_t z                  (DDIM(eta); eta = 1: ancestral)
    x_prev   = x'_prev - zeta_i g,      zeta_i = zeta (t - t_prev)  (guidance="time")

The DPS paper's ``zeta_i = zeta`` is ``guidance="constant"``; both agree at the full
T-step schedule (:class:`~dmap.solvers.base.StepSizeOptions`).
Argument names: zeta -> ``step_size``, N -> ``steps``.  One network evaluation with
gradient per step.  When the denoiser's prior step is another model (DPS+CSE, Xu et al.
2025 Sec. 4: the conditional score estimator), ``mu`` uses that model's x0_hat, one more
evaluation (no gradient) per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.schedule import step_pairs
from dmap.solvers.base import Method, StepSizeOptions, register
from dmap.solvers.common import Callback, check_state, measurement_grad


@dataclass(frozen=True)
class DPSOptions(StepSizeOptions):
    """``step_size`` (zeta) scales the likelihood gradient (see :class:`StepSizeOptions`)."""

    steps: int = 1000


def solve_dps(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: DPSOptions = DPSOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Solve ``y = A(x) + n`` with DPS along the time ``grid``; returns the images ``[B, C, H, W]``
    in [-1, 1]."""
    schedule, eta, clamp = denoiser.schedule, options.eta, options.clamp
    x = randn((y.shape[0], *denoiser.shape), generator, y)
    for i, (t, t_prev) in enumerate(step_pairs(grid)):
        x = x.detach().requires_grad_(True)
        x0_hat = denoiser.x0(x, t)
        g, residual = measurement_grad(x, x0_hat, physics, y, clamp)
        with torch.no_grad():
            x0_mu = x0_hat if denoiser.prior_step is denoiser else denoiser.prior_step.x0(x, t)
            mu, sigma = schedule.reverse_mean_std(x, x0_mu, t, t_prev, eta)
            zeta = options.zeta(t, t_prev)
            unguided = mu + sigma * randn(x.shape, generator, x)
            x = unguided - zeta * g
        check_state(x, "dps", i, t, options.step_size, unguided)
        if callback is not None:
            callback(
                {
                    "step": i,
                    "t": t,
                    "x": x,
                    "x0_hat": x0_hat.detach(),
                    "residual": residual,
                    "grad_norm": g.reshape(len(g), -1).norm(dim=1),
                }
            )
    return physics.image(x.detach())


register(Method("dps", solve_dps, DPSOptions, "Diffusion Posterior Sampling (Chung et al. 2023)"))
