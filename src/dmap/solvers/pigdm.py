"""Pseudoinverse-guided diffusion (ΠGDM; Song, Vahdat, Mardani & Kautz, ICLR 2023,
"Pseudoinverse-Guided Diffusion Models for Inverse Problems").

For a linear ``A`` and noise std ``sigma_y``, ΠGDM takes ``p(x_0 | x_t) ~ N(x0_hat, r_t^2 I)``
with ``r_t^2 = 1 - ab_t`` (exact for a standard normal prior), so that
``p(y | x_t) ~ N(A x0_hat, r_t^2 A A^T + sigma_y^2 I)`` and its score is::

    v  = (r_t^2 A A^T + sigma_y^2 I)^-1 (y - A x0_hat)         (conjugate gradients in y-space)
    g  = (d x0_hat / d x_t)^T A^T v                            (one vector-Jacobian product)

The guided score ``s + w_t g`` replaces the prior's in the DDIM(eta) step: by Tweedie
``x0_g = x0_hat + w_t (1 - ab_t) / sqrt(ab_t) g``, then ``x_prev = mu(x_t, x0_g) + sigma_t z``.
``weighting="score"``: ``w_t = w``, the Bayes update; with ``w = 1`` and a standard normal
prior it uses the exact posterior score (tested).  On a trained network it diverges
(``mnist``, 100 steps: every ``w`` from 0.03 up), because at high noise errors of the
network's Jacobian ``d x0_hat / d x_t`` are multiplied by up to ``1 / ab_t``.
``weighting="damped"`` (default): ``w_t = w ab_t``, the same at low noise and damped at high
noise; for a noiseless ``A`` with orthonormal rows the step then adds
``~ w sqrt(ab_t') sqrt(ab_t) (d x0_hat/d x_t)^T A^+ (y - A x0_hat)``, the weighting of the
azula library's ΠGDM (measured on ``mnist``, 8 train digits, 100 steps: stable at every
``w`` tried, 0.3-10).  One network evaluation with gradient per step.  Argument names:
w -> ``weight``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from dmap.operators.base import LinearOperator, conjugate_gradients
from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.schedule import step_pairs
from dmap.solvers.base import Method, ReverseOptions, register, tunable
from dmap.solvers.common import Callback, check_state


@dataclass(frozen=True)
class PiGDMOptions(ReverseOptions):
    """``weight`` (w) scales the likelihood score, ``weighting`` how it changes with the
    noise level (``damped``: ``w ab_t``; ``score``: ``w``, the exact Bayes update);
    ``cg_iters`` bounds the conjugate gradients of the y-space solve."""

    steps: int = 100
    weight: float = tunable(1.0, grid=(0.3, 1.0, 3.0, 10.0, 30.0), refine=(0.58, 1.73))
    weighting: str = "damped"
    cg_iters: int = 50
    needs: ClassVar[tuple[str, ...]] = ("linear",)

    def check(self) -> None:
        super().check()
        if self.weighting not in ("damped", "score"):
            raise ValueError(f"weighting must be damped or score, got {self.weighting!r}")


def likelihood_score(
    operator: LinearOperator | Physics, y: Tensor, x: Tensor, x0_hat: Tensor, r2: float, sigma_y: Tensor, iters: int
) -> Tensor:
    """``g = (d x0_hat/d x)^T A^T (r2 A A^T + sigma_y^2 I)^-1 (y - A x0_hat)`` per sample
    (``sigma_y [B]``; ``x0_hat`` a differentiable function of ``x``)."""
    ax = operator.A(x0_hat)
    s2 = (sigma_y**2).reshape(-1, *([1] * (y.dim() - 1))).to(y)
    with torch.no_grad():
        residual = y - ax
        v = conjugate_gradients(lambda u: r2 * operator.A(operator.AT(u)) + s2 * u, residual, residual, iters)
    (g,) = torch.autograd.grad((ax * v).sum(), x)
    return g


def solve_pigdm(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: PiGDMOptions = PiGDMOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Solve ``y = A x + n`` with ΠGDM along the time ``grid`` (a linear ``physics`` with its
    noise std per sample); returns the images ``[B, C, H, W]`` in [-1, 1]."""
    schedule = denoiser.schedule
    x = randn((y.shape[0], *denoiser.shape), generator, y)
    for i, (t, t_prev) in enumerate(step_pairs(grid)):
        x = x.detach().requires_grad_(True)
        x0_hat = denoiser.x0(x, t)
        ab = float(schedule.alpha_bar[t])
        g = likelihood_score(physics, y, x, x0_hat, 1 - ab, physics.sigma_y, options.cg_iters)
        with torch.no_grad():
            w = options.weight * (1.0 if options.weighting == "score" else ab)
            x0_g = x0_hat + w * (1 - ab) / ab**0.5 * g
            mu, sigma = schedule.reverse_mean_std(x, x0_g, t, t_prev, options.eta)
            z = randn(x.shape, generator, x)
            unguided = schedule.reverse_mean_std(x, x0_hat, t, t_prev, options.eta)[0] + sigma * z
            x = mu + sigma * z
        check_state(x, "pigdm", i, t, options.weight, unguided)
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "x0_hat": x0_hat.detach()})
    return physics.image(x.detach())


register(Method("pigdm", solve_pigdm, PiGDMOptions, "pseudoinverse-guided diffusion (Song et al. 2023)"))
