"""DAPS: decoupled annealing posterior sampling (Zhang et al., CVPR 2025, "Improving
Diffusion Inverse Problem Solving with Decoupled Noise Annealing", arXiv 2407.01521, Alg. 1).

For ``t = tau_N .. tau_1`` (the annealing steps, ``t'`` the next one)::

    x0_hat = ODE(x_t, t -> 0)               (``ode_steps`` deterministic DDIM steps, no gradient)
    x0     = x0_hat, then ``langevin_steps`` times:
        x0 = x0 - eta_t grad U(x0) + sqrt(2 eta_t) z,
        U(x0) = ||x0 - x0_hat||^2 / (2 r_t^2) + ||y - A(x0)||^2 / (2 sigma^2)
    x_t'   = sqrt(ab_t') x0 + sqrt(1 - ab_t') eps     (x0 itself at the end)

``r_t = sqrt((1 - ab_t) / ab_t)``, the noise level of ``x_t`` in the variance-exploding
scale (the paper's ``r_t = sigma_t``); ``sigma`` the measurement noise std, at least
``min_sigma``.  The Langevin step is ``eta_t = lr / L_t`` with ``L_t = 1 / r_t^2 + 1 /
sigma^2``, the gradient's Lipschitz constant when ``||A|| <= 1``, so one ``lr`` in (0, 1)
is stable at every noise level.  No gradient goes through the network (only through
``A``): nonlinear operators work as they are.  ``steps * ode_steps`` evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dmap.operators.base import Operator
from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.schedule import step_pairs
from dmap.solvers.base import Method, Options, register, tunable
from dmap.solvers.common import Callback, check_state


@dataclass(frozen=True)
class DAPSOptions(Options):
    """``ode_steps`` network evaluations per annealing step (the inner ODE), ``langevin_steps``
    and ``lr`` (its step relative to the Lipschitz constant) of the measurement-conditioned
    Langevin, ``min_sigma`` the least noise std its likelihood assumes."""

    steps: int = 200
    ode_steps: int = 5
    langevin_steps: int = 50
    lr: float = tunable(0.3, grid=(0.01, 0.03, 0.1, 0.3, 1.0), refine=(0.58, 1.73))
    min_sigma: float = 0.01

    def check(self) -> None:
        super().check()
        for name in ("ode_steps", "langevin_steps"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name.replace('_', ' ')} must be an integer >= 1, got {getattr(self, name)}")
        if not 0 < self.min_sigma:
            raise ValueError(f"min sigma must be > 0, got {self.min_sigma}")

    @property
    def step_evals(self) -> int:
        return self.ode_steps


def ode_x0(prior: Prior, x: Tensor, t: int, steps: int) -> Tensor:
    """``x0`` by ``steps`` deterministic DDIM steps from ``(x, t)`` down to the clean image,
    at ``round(t (1 - k / steps))``, ``k = 0 .. steps-1`` (for ``t < steps`` some repeat: a
    step from a time to itself leaves ``x`` as it is, so a call costs ``steps`` evaluations)."""
    grid = [round(t * (1 - k / steps)) for k in range(steps)]
    for s, s_prev in zip(grid, grid[1:] + [-1]):
        x, _ = prior.schedule.reverse_mean_std(x, prior.x0(x, s), s, s_prev, eta=0.0)
    return x


def langevin(
    operator: Operator | Physics, y: Tensor, x0_hat: Tensor, r2: float, sigma: Tensor, options: DAPSOptions, generator: Generators
) -> Tensor:
    """Langevin samples of ``p(x0 | x0_hat, y) ~ N(x0; x0_hat, r2 I) p(y | x0)`` from ``x0_hat``."""
    s2 = (sigma**2).reshape(-1, *([1] * (x0_hat.dim() - 1))).to(x0_hat)
    eta = options.lr / (1 / r2 + 1 / s2)
    x = x0_hat.clone()
    for _ in range(options.langevin_steps):
        x = x.detach().requires_grad_(True)
        data = ((y - operator.A(x)) ** 2).reshape(len(x), -1).sum(1)
        (g,) = torch.autograd.grad(data.sum(), x)
        with torch.no_grad():
            grad = (x - x0_hat) / r2 + g / (2 * s2)
            x = x - eta * grad + (2 * eta).sqrt() * randn(x.shape, generator, x)
    return x.detach()


def solve_daps(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: DAPSOptions = DAPSOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Solve ``y = A(x) + n`` with DAPS along the time ``grid`` (``physics`` with its noise
    std per sample); returns the images ``[B, C, H, W]`` in [-1, 1]."""
    schedule = denoiser.schedule
    sigma = physics.sigma_y.clamp_min(options.min_sigma)
    x = randn((y.shape[0], *denoiser.shape), generator, y)
    for i, (t, t_prev) in enumerate(step_pairs(grid)):
        with torch.no_grad():
            x0_hat = ode_x0(denoiser, x, t, options.ode_steps)
        ab = float(schedule.alpha_bar[t])
        x0 = langevin(physics, y, x0_hat, (1 - ab) / ab, sigma, options, generator)
        x = x0 if t_prev < 0 else schedule.q_sample(x0, t_prev, randn(x0.shape, generator, x0))
        check_state(x, "daps", i, t, options.lr)
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "x0_hat": x0_hat})
    return physics.image(x)


register(Method("daps", solve_daps, DAPSOptions, "decoupled annealing, Langevin on x0 (Zhang et al. 2025)"))
