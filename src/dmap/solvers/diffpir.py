"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu et al.,
CVPR 2023 workshops, arXiv 2305.08995, Alg. 1), for linear operators.

For ``t = tau_N .. tau_1`` (``t'`` the next timestep), with ``sigma_t^2 = (1 - ab_t) / ab_t``::

    x0_hat  = x0(x_t, t)                                      (1 evaluation, no gradient)
    rho_t   = lambda sigma_y^2 / sigma_t^2
    x0_y    = argmin_x ||y - A x||^2 + rho_t ||x - x0_hat||^2  (the proximal data step:
              (A^T A + rho_t I) x = A^T y + rho_t x0_hat, by conjugate gradients)
    eps_hat = (x_t - sqrt(ab_t) x0_y) / sqrt(1 - ab_t)
    x_t'    = sqrt(ab_t') x0_y + sqrt(1 - ab_t') (sqrt(1 - zeta) eps_hat + sqrt(zeta) eps)

and ``x0_y`` at the last step, on the DiffPIR code's quadratic time grid by default.
Argument names: lambda -> ``lam``, zeta -> ``zeta``.
No gradient goes through the network: an evaluation costs about half of DPS's.
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
from dmap.solvers.base import Method, Options, register, tunable
from dmap.solvers.common import Callback, check_state


@dataclass(frozen=True)
class DiffPIROptions(Options):
    """``lam`` (lambda) weighs the prior against the data in the proximal step; ``zeta`` is
    the share of fresh noise in the step to ``t'``; ``cg_iters`` bounds the conjugate gradients."""

    steps: int = 100
    spacing: str = "quadratic"  # the DiffPIR code's grid (dense at low noise)
    lam: float = tunable(7.0, grid=(0.003, 0.01, 0.03, 0.1, 0.3), refine=(0.58, 1.73))
    zeta: float = 0.3
    cg_iters: int = 50
    needs: ClassVar[tuple[str, ...]] = ("linear",)

    def check(self) -> None:
        super().check()
        if not 0 <= self.zeta <= 1:
            raise ValueError(f"zeta must lie in [0, 1], got {self.zeta}")


def proximal_step(operator: LinearOperator | Physics, y: Tensor, x0_hat: Tensor, rho: Tensor, iters: int) -> Tensor:
    """``argmin_x ||y - A x||^2 + rho ||x - x0_hat||^2`` per sample (``rho [B]``), by
    conjugate gradients on ``(A^T A + rho I) x = A^T y + rho x0_hat`` from ``x0_hat``."""
    r = rho.reshape(-1, *([1] * (x0_hat.dim() - 1))).to(x0_hat)
    return conjugate_gradients(lambda v: operator.AT(operator.A(v)) + r * v, operator.AT(y) + r * x0_hat, x0_hat, iters)


def solve_diffpir(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: DiffPIROptions = DiffPIROptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Solve ``y = A(x) + n`` with DiffPIR along the time ``grid`` (a linear ``physics`` with
    its noise std per sample); returns the images ``[B, C, H, W]`` in [-1, 1]."""
    schedule = denoiser.schedule
    x = randn((y.shape[0], *denoiser.shape), generator, y)
    for i, (t, t_prev) in enumerate(step_pairs(grid)):
        with torch.no_grad():
            x0_hat = denoiser.x0(x, t)
            ab = float(schedule.alpha_bar[t])
            rho = options.lam * physics.sigma_y.double() ** 2 * ab / (1 - ab)
            x0_y = proximal_step(physics, y, x0_hat, rho, options.cg_iters)
            if t_prev < 0:
                x = x0_y
            else:
                eps_hat = schedule.x0_to_eps(x, x0_y, t)
                noise = options.zeta**0.5 * randn(x.shape, generator, x) + (1 - options.zeta) ** 0.5 * eps_hat
                x = schedule.q_sample(x0_y, t_prev, noise)
        check_state(x, "diffpir", i, t, options.lam)
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "x0_hat": x0_hat})
    return physics.image(x)


register(Method("diffpir", solve_diffpir, DiffPIROptions, "plug-and-play proximal data step (Zhu et al. 2023)"))
