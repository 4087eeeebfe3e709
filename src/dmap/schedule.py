"""The variance-preserving (DDPM) noise schedule, stateless and in float64.

Notation (Ho et al. 2020; docs/methods.md)::

    x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps,      ab_t = prod_{s <= t} (1 - beta_s)
    x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)    (Tweedie)
    s(x_t) = -eps / sqrt(1 - ab_t)                       (score)

Timesteps are 0-based (``t = 0 .. T-1``); ``t = -1`` stands for the clean image
(``ab = 1``), the target of the last reverse step.  Every coefficient is computed in
float64 and only then cast to the dtype of the tensor it multiplies.  A schedule
serializes itself (:class:`ScheduleConfig`): a prior saved with a cosine schedule
reloads with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from dmap.config import Config

KINDS = ("linear", "scaled_linear", "cosine")
SPACINGS = ("uniform", "quadratic", "karras")
KARRAS_RHO = 7.0  # Karras et al. 2022, Eq. 5


@dataclass(frozen=True)
class ScheduleConfig(Config):
    """What defines a schedule, saved with every prior: ``kind`` (``linear``: betas from
    ``beta_start`` to ``beta_end``; ``scaled_linear``: linear in ``sqrt(beta)``, as Stable
    Diffusion's; ``cosine``: Nichol & Dhariwal's with offset ``s``) and the number of
    steps ``T``."""

    kind: str = "linear"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    s: float = 0.008

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule kind {self.kind!r}; choose from {', '.join(KINDS)}")
        if self.T < 1:
            raise ValueError(f"a schedule needs T >= 1, got {self.T}")

    def betas(self) -> Tensor:
        """The betas in float64, length ``T``."""
        if self.kind == "linear":
            return torch.linspace(self.beta_start, self.beta_end, self.T, dtype=torch.float64)
        if self.kind == "scaled_linear":
            return torch.linspace(self.beta_start**0.5, self.beta_end**0.5, self.T, dtype=torch.float64) ** 2
        f = torch.cos((torch.arange(self.T + 1, dtype=torch.float64) / self.T + self.s) / (1 + self.s) * math.pi / 2) ** 2
        return torch.clamp(1 - f[1:] / f[:-1], max=0.999)


@dataclass(frozen=True, eq=False)
class Schedule:
    """A DDPM schedule built from its :class:`ScheduleConfig` (betas in float64, length T)."""

    config: ScheduleConfig

    @cached_property
    def betas(self) -> Tensor:
        return self.config.betas()

    @cached_property
    def _ab_padded(self) -> Tensor:
        # index t + 1, so that t = -1 (the clean image) reads ab = 1
        ab = torch.cumprod(1 - self.betas, dim=0)
        return torch.cat([torch.ones(1, dtype=torch.float64), ab])

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
        """Linear betas from ``beta_start`` to ``beta_end`` (the ADM/DPS default)."""
        return cls(ScheduleConfig("linear", T, beta_start, beta_end))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008) -> Schedule:
        """Cosine schedule of Nichol & Dhariwal (2021), betas clipped at 0.999."""
        return cls(ScheduleConfig("cosine", T, s=s))

    @property
    def T(self) -> int:
        return self.betas.numel()

    @property
    def alpha_bar(self) -> Tensor:
        return self._ab_padded[1:]

    def ab(self, t: Tensor | int, like: Tensor) -> Tensor:
        """``ab_t`` in float64 for an int64 timestep tensor ``[B]`` (or an int), shaped to
        broadcast against ``like`` ([B, ...]) on its device; ``t = -1`` gives 1."""
        t = torch.as_tensor(t, dtype=torch.int64).reshape(-1)
        if (t < -1).any() or (t >= self.T).any():
            raise ValueError(f"timesteps must lie in [-1, {self.T - 1}], got {t.tolist()}")
        ab = self._ab_padded[t.cpu() + 1]
        return ab.reshape(-1, *([1] * (like.dim() - 1))).to(device=like.device)

    def coef(self, t: Tensor | int, like: Tensor, fn) -> Tensor:
        """``fn(ab_t)`` computed in float64, then cast to ``like``'s dtype: coefficients such
        as ``sqrt(1 - ab_t)`` keep their precision near ``t = 0``."""
        return fn(self.ab(t, like)).to(like.dtype)

    def sigmas(self) -> Tensor:
        """The VE noise level ``sigma_t = sqrt((1 - ab_t) / ab_t)`` of every timestep (float64 ``[T]``)."""
        return ((1 - self.alpha_bar) / self.alpha_bar).sqrt()

    def timesteps(self, steps: int, spacing: str = "uniform") -> list[int]:
        """Respaced timesteps ``tau_N > ... > tau_1``.  ``uniform``: ``steps`` evenly spaced
        integers from ``T-1`` down to 0 (guided-diffusion's ``space_timesteps``);
        ``quadratic``: ``T-1 - floor(sqrt(u))`` for ``u`` evenly spaced in ``[0, T^2]`` (the
        DiffPIR code's grid, dense at low noise; it needs ``steps <= T/2``); ``karras``: the
        timesteps whose sigma is nearest (in log) to Karras et al.'s (2022, Eq. 5, rho = 7)
        ``(s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho`` between the
        schedule's own extremes, made distinct by moving a repeated one up (``steps <= T/4``)."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must be in [1, {self.T}], got {steps}")
        if spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {spacing!r}; choose from {', '.join(SPACINGS)}")
        if steps == 1:
            return [self.T - 1]
        if spacing == "karras":
            return self._karras(steps)
        if spacing == "quadratic":
            ts = (self.T - 1 - torch.linspace(0, self.T**2, steps, dtype=torch.float64).sqrt().floor()).long().clamp_min(0)
            ts[-1] = 0
            if bool((ts[1:] >= ts[:-1]).any()):
                raise ValueError(f"quadratic spacing needs steps <= {self.T // 2}, got {steps}")
            return ts.tolist()
        grid = torch.linspace(0, self.T - 1, steps, dtype=torch.float64).round().long()
        return grid.flip(0).tolist()

    def _karras(self, steps: int) -> list[int]:
        if steps > self.T // 4:
            raise ValueError(f"karras spacing needs steps <= {self.T // 4}, got {steps}")
        sigma = self.sigmas()
        lo, hi = sigma[0] ** (1 / KARRAS_RHO), sigma[-1] ** (1 / KARRAS_RHO)
        target = (hi + torch.linspace(0, 1, steps, dtype=torch.float64) * (lo - hi)) ** KARRAS_RHO  # largest first
        ts = (sigma.log()[None, :] - target.log()[:, None]).abs().argmin(1).tolist()
        for i in range(len(ts) - 2, -1, -1):  # strictly decreasing, from the low-noise end up
            ts[i] = max(ts[i], ts[i + 1] + 1)
        return ts

    # --- forward process and conversions -----------------------------------------

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``."""
        return self.coef(t, x0, torch.sqrt) * x0 + self.coef(t, x0, lambda a: (1 - a).sqrt()) * noise

    def eps_to_x0(self, x_t: Tensor, eps: Tensor, t: Tensor | int) -> Tensor:
        return (x_t - self.coef(t, x_t, lambda a: (1 - a).sqrt()) * eps) * self.coef(t, x_t, torch.rsqrt)

    def x0_to_eps(self, x_t: Tensor, x0: Tensor, t: Tensor | int) -> Tensor:
        return (x_t - self.coef(t, x_t, torch.sqrt) * x0) * self.coef(t, x_t, lambda a: (1 - a).rsqrt())

    def eps_to_score(self, eps: Tensor, t: Tensor | int) -> Tensor:
        return -eps * self.coef(t, eps, lambda a: (1 - a).rsqrt())

    def score_to_eps(self, score: Tensor, t: Tensor | int) -> Tensor:
        return -score * self.coef(t, score, lambda a: (1 - a).sqrt())

    # --- reverse steps -------------------------------------------------------------

    def reverse_mean_std(self, x_t: Tensor, x0_hat: Tensor, t: int, t_prev: int, eta: float = 1.0) -> tuple[Tensor, Tensor]:
        """Mean and std of the DDIM(eta) transition ``p(x_{t_prev} | x_t)``.

        ``sigma = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev)``,
        ``mu = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps``, with ``eps``
        implied by ``(x_t, x0_hat)``.  For ``eta = 1`` this is the ancestral (DDPM)
        step ``mu = c0 x0_hat + c1 x_t``, ``sigma^2 = beta' (1 - ab_prev) / (1 - ab_t)``.
        Returns ``sigma`` as a tensor broadcastable against ``x_t``.
        """
        ab_t = self.ab(t, x_t)
        ab_prev = self.ab(t_prev, x_t)
        var = eta**2 * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        # eps = (x_t - sqrt(ab_t) x0_hat) / sqrt(1 - ab_t), folded into two coefficients
        c_eps = (1 - ab_prev - var).clamp_min(0).sqrt() / (1 - ab_t).sqrt()
        c_x0 = ab_prev.sqrt() - c_eps * ab_t.sqrt()
        dtype = x_t.dtype
        mu = c_x0.to(dtype) * x0_hat + c_eps.to(dtype) * x_t
        return mu, var.sqrt().to(dtype)

    def score_step_factor(self, t: int, t_prev: int) -> float:
        """``sqrt(alpha'_t) / beta'_t`` for the step ``t -> t_prev``: since the reverse mean
        is ``mu = (x_t + beta' s(x_t)) / sqrt(alpha')``, shifting ``mu`` by ``-zeta g``
        shifts the implied score by ``-zeta * sqrt(alpha') / beta' * g``."""
        ab_t = float(self._ab_padded[t + 1])
        alpha = ab_t / float(self._ab_padded[t_prev + 1])
        return math.sqrt(alpha) / (1 - alpha)


def step_pairs(grid: Tensor | list[int]) -> list[tuple[int, int]]:
    """``(t, t_prev)`` for each reverse step of a time grid ``tau_N > ... > tau_1``; the
    last ``t_prev`` is -1 (the clean image)."""
    ts = [int(t) for t in grid]
    return list(zip(ts, ts[1:] + [-1]))
