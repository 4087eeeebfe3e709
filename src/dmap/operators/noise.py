"""Measurement noise models, objects beside the operator: ``y = noise(A(x))``.

- :class:`GaussianNoise`: ``y = A x + sigma n`` (``sigma`` in [-1, 1] units);
- :class:`PoissonNoise`: photon counts of the intensity ``z = (A x + 1) / 2`` in [0, 1]
  at ``photons`` per unit intensity, brought back to [-1, 1] units:
  ``y = 2 Poisson(photons z) / photons - 1``, so ``Var(y) = 4 z / photons``;
- :class:`PoissonGaussianNoise`: both, ``Var(y) = 4 z / photons + sigma^2``.

The guided methods' data term is ``||y - A(x0_hat)||``.  For the Poisson models they use
its standard Gaussian approximation, a weighted norm ``||w (y - A(x0_hat))||`` with
``w_i`` proportional to ``1 / sqrt(Var(y_i))`` (the variance estimated from ``y``,
floored at one photon) and scaled so that ``mean(w^2) = 1`` per sample: the same scale as
the unweighted norm, so a step size means about the same thing under every model.
:meth:`Noise.whiten` returns the weighted operator and measurement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dmap.config import Config
from dmap.operators.base import LinearOperator, Operator
from dmap.rng import Generators, poisson, randn


@dataclass(frozen=True)
class Noise(Config):
    """Base class: ``sample`` draws ``y`` given ``A x``; ``whiten`` gives the data term."""

    def sample(self, ax: Tensor, generator: Generators = None) -> Tensor:
        raise NotImplementedError

    def variance(self, y: Tensor) -> Tensor | None:
        """``Var(y_i)`` estimated from ``y`` (``None``: the same for every entry)."""
        return None

    @property
    def sigma(self) -> float:
        """The standard deviation of the Gaussian part (0 without one)."""
        return 0.0

    def whitened_std(self, y: Tensor) -> Tensor:
        """The noise std per entry of the whitened measurement, per sample ``[B]``: the
        Gaussian std, or ``1 / sqrt(mean(1 / Var(y_i)))`` for the Poisson models (what the
        noise-aware methods such as DiffPIR and DDRM use)."""
        var = self.variance(y)
        if var is None:
            return torch.full((y.shape[0],), self.sigma, dtype=y.dtype, device=y.device)
        return (1 / var).reshape(y.shape[0], -1).mean(1).rsqrt().clamp_min(1e-3)

    def whiten(self, op: Operator, y: Tensor) -> tuple[Operator, Tensor]:
        """``(W A, W y)`` with ``W = diag(w)`` (see the module docstring); unchanged for
        noise of one variance."""
        var = self.variance(y)
        if var is None:
            return op, y
        w = var.rsqrt()
        w = w / w.pow(2).reshape(len(w), -1).mean(1).sqrt().reshape(-1, *([1] * (w.dim() - 1)))
        return Weighted(op, w), w * y


@dataclass(frozen=True)
class GaussianNoise(Noise):
    std: float = 0.05

    def __post_init__(self) -> None:
        if not (math.isfinite(self.std) and self.std >= 0):
            raise ValueError(f"sigma_y must be a finite number >= 0, got {self.std}")

    @property
    def sigma(self) -> float:
        return self.std

    def sample(self, ax: Tensor, generator: Generators = None) -> Tensor:
        return ax + self.std * randn(ax.shape, generator, ax)


@dataclass(frozen=True)
class PoissonNoise(Noise):
    photons: float = 100.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.photons) and self.photons > 0):
            raise ValueError(f"the photon count must be a finite number > 0, got {self.photons}")

    def counts(self, ax: Tensor, generator: Generators) -> Tensor:
        return poisson(self.photons * ((ax + 1) / 2).clamp_min(0), generator)

    def sample(self, ax: Tensor, generator: Generators = None) -> Tensor:
        return 2 * self.counts(ax, generator) / self.photons - 1

    def variance(self, y: Tensor) -> Tensor:
        z = ((y + 1) / 2).clamp_min(1 / self.photons)  # at least one photon's worth
        return 4 * z / self.photons + self.sigma**2


@dataclass(frozen=True)
class PoissonGaussianNoise(PoissonNoise):
    std: float = 0.05

    @property
    def sigma(self) -> float:
        return self.std

    def sample(self, ax: Tensor, generator: Generators = None) -> Tensor:
        y = super().sample(ax, generator)
        return y + self.std * randn(y.shape, generator, y)


class Weighted(LinearOperator):
    """``W A`` for per-sample weights ``w [B, *y_shape]`` of a batch (linear when ``A`` is)."""

    def __init__(self, op: Operator, w: Tensor) -> None:
        super().__init__(op.x_shape, op.y_shape)
        self.op = op
        self.linear = op.linear
        self.register_buffer("w", w)

    def A(self, x: Tensor) -> Tensor:
        return self.w * self.op.A(x)

    def AT(self, y: Tensor) -> Tensor:
        return self.op.AT(self.w * y)
