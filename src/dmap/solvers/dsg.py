"""Diffusion with Spherical Gaussian constraint (Yang et al., ICML 2024, arXiv 2402.03201).

For ``t = tau_N .. tau_1``::

    x0_hat   = (x_t - sqrt(1 - ab_t) eps(x_t, t)) / sqrt(ab_t)
    x'_prev  = mu + sigma_t z,        d = x'_prev - mu,        r = sqrt(n) sigma_t
    g        = grad_{x_t} ||y - A(x0_hat)||                  (every ``interval`` steps)
    d*       = -r g / ||g||
    d_m      = d + g_r,i (d* - d)      g_r,i = 1 - (1 - g_r)^(t - t_prev)  (guidance="time";
                                                             g_r itself with guidance="constant")
    x_prev   = mu + r d_m / ||d_m||                          (projection on the sphere)

Argument names: g_r -> ``guidance_rate``, n = C*H*W.  One network evaluation per step,
with gradient on guided steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.schedule import step_pairs
from dmap.solvers.base import GuidanceOptions, Method, register, tunable
from dmap.solvers.common import Callback, check_state, measurement_grad, per_sample_norm, project_to_sphere


@dataclass(frozen=True)
class DSGOptions(GuidanceOptions):
    """``guidance_rate`` (g_r), guidance every ``interval`` steps (see
    :class:`~dmap.solvers.base.GuidanceOptions` for ``guidance`` and ``clamp``)."""

    steps: int = 1000
    guidance_rate: float = tunable(0.1, grid=(0.01, 0.03, 0.1, 0.3, 1.0), refine=(0.58, 1.73))
    interval: int = 1

    def rate(self, t: int, t_prev: int) -> float:
        """``g_r,i = 1 - (1 - g_r)^u`` for a step of ``u`` time units: ``u`` interpolations
        towards the same target at rate g_r, composed into one."""
        return 1 - (1 - min(self.guidance_rate, 1.0)) ** self.units(t, t_prev)

    def check(self) -> None:
        super().check()
        if not (isinstance(self.interval, int) and self.interval >= 1):
            raise ValueError(f"interval must be an integer >= 1, got {self.interval}")


def solve_dsg(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: DSGOptions = DSGOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Solve ``y = A(x) + n`` with DSG along the time ``grid``; returns the images ``[B, C, H, W]``
    in [-1, 1]."""
    interval, eta, clamp = options.interval, options.eta, options.clamp
    schedule = denoiser.schedule
    n = math.prod(denoiser.shape)
    x = randn((y.shape[0], *denoiser.shape), generator, y)
    for i, (t, t_prev) in enumerate(step_pairs(grid)):
        guided = i % interval == 0
        x = x.detach().requires_grad_(guided)
        with torch.set_grad_enabled(guided):
            x0_hat = denoiser.x0(x, t)
        with torch.no_grad():
            mu, sigma = schedule.reverse_mean_std(x, x0_hat, t, t_prev, eta)
            d = sigma * randn(x.shape, generator, x)
            unguided = mu + d
        info = {}
        if guided:
            g, residual = measurement_grad(x, x0_hat, physics, y, clamp)
            r = math.sqrt(n) * sigma
            d_star = -r * g / per_sample_norm(g).clamp_min(1e-30)
            d = d + options.rate(t, t_prev) * (d_star - d)
            d = project_to_sphere(mu + d, mu, r) - mu
            info = {"residual": residual, "grad_norm": g.reshape(len(g), -1).norm(dim=1)}
        x = (mu + d).detach()
        check_state(x, "dsg", i, t, options.guidance_rate, unguided)
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "x0_hat": x0_hat.detach(), **info})
    return physics.image(x)


register(Method("dsg", solve_dsg, DSGOptions, "Spherical Gaussian guidance (Yang et al. 2024)"))
