"""deepinv interop: a deepinv ``Physics`` as a dmap operator, and a dmap prior as a
deepinv denoiser, so that deepinv users can call DPS, DSG and DMAP on their problems and
deepinv's methods can run on dmap's priors.  Needs ``pip install deepinv`` (which brings
torchvision; not a dependency of dmap).

Conventions: dmap images live in [-1, 1] and deepinv's in [0, 1].  An operator from a
physics applies the physics to dmap's images as they are, so simulate measurements with
``dmap.make_task(op).simulate(x)``.  The denoiser ``D(x, sigma)`` takes a [0, 1] image
with Gaussian noise of std ``sigma`` ([0, 1] units), which in [-1, 1] units is
``x + 2 sigma n``; in the variance-preserving parametrization that is
``x_t / sqrt(ab)`` with ``ab = 1 / (1 + 4 sigma^2)``, so

    D(x, sigma) = (x0_hat(sqrt(ab) (2 x - 1), t) + 1) / 2,

with ``t`` the timestep whose ``ab_t`` is nearest ``ab`` (exact when sigma is one of the
schedule's noise levels, :func:`sigma_of`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmap.operators.base import Operator
from dmap.operators.function import FunctionOperator, NonlinearFunctionOperator
from dmap.priors.base import Prior


def operator_from_physics(physics, x_shape: tuple[int, int, int], name: str = "deepinv") -> Operator:
    """A dmap operator for a deepinv ``Physics`` on images of ``x_shape``: ``A`` and, for a
    ``LinearPhysics``, its ``A_adjoint`` and ``A_dagger``."""
    import deepinv

    if isinstance(physics, deepinv.physics.LinearPhysics):
        return FunctionOperator(physics.A, x_shape, AT=physics.A_adjoint, pinv=physics.A_dagger, name=name)
    return NonlinearFunctionOperator(physics.A, x_shape, name=name)


def sigma_of(prior: Prior, t: int) -> float:
    """The deepinv noise level (std on [0, 1] images) of timestep ``t``:
    ``sqrt((1 - ab_t) / ab_t) / 2``."""
    ab = float(prior.schedule.alpha_bar[t])
    return ((1 - ab) / ab) ** 0.5 / 2


def denoiser_from_prior(prior: Prior):
    """``prior`` as a ``deepinv.models.Denoiser`` (see the module docstring)."""
    from deepinv.models import Denoiser

    class PriorDenoiser(Denoiser):
        def __init__(self) -> None:
            super().__init__()
            self.prior = prior

        def forward(self, x: Tensor, sigma: float | Tensor, **kwargs) -> Tensor:
            sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(x.shape[0])
            ab = 1 / (1 + 4 * sigma**2)
            grid = prior.schedule.alpha_bar
            t = (grid[None, :] - ab[:, None]).abs().argmin(1)
            scale = ab.sqrt().to(x).reshape(-1, *([1] * (x.dim() - 1)))
            x0 = prior.x0(scale * (2 * x - 1), t.to(x.device))
            return (x0 + 1) / 2

    return PriorDenoiser()
