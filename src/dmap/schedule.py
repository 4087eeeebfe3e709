"""The variance-preserving (DDPM) noise schedule, stateless and in float64.

Notation (Ho et al. 2020; DESIGN.md section 3)::

    x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps,      ab_t = prod_{s <= t} (1 - beta_s)
    x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)    (Tweedie)
    s(x_t) = -eps / sqrt(1 - ab_t)                       (score)

Timesteps are 0-based (``t = 0 .. T-1``); ``t = -1`` stands for the clean image
(``ab = 1``), the target of the last reverse step.  All coefficients are computed
in float64 and cast to the dtype of the tensor they multiply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Schedule:
    """A DDPM schedule given by its betas (float64, length T)."""

    betas: Tensor

    def __post_init__(self) -> None:
        ab = torch.cumprod(1 - self.betas.to(torch.float64), dim=0)
        # index t + 1, so that t = -1 (the clean image) reads ab = 1
        object.__setattr__(self, "_ab_padded", torch.cat([torch.ones(1, dtype=torch.float64), ab]))

    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "Schedule":
        """Linear betas from ``beta_start`` to ``beta_end`` (the ADM/DPS default)."""
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008) -> "Schedule":
        """Cosine schedule of Nichol & Dhariwal (2021), betas clipped at 0.999."""
        f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
        return cls(torch.clamp(1 - f[1:] / f[:-1], max=0.999))

    @property
    def T(self) -> int:
        return self.betas.numel()

    @property
    def alpha_bar(self) -> Tensor:
        return self._ab_padded[1:]

    def ab(self, t: Tensor | int, like: Tensor) -> Tensor:
        """``ab_t`` for an int64 timestep tensor ``[B]`` (or an int), shaped to broadcast
        against ``like`` ([B, ...]) and cast to its dtype/device; ``t = -1`` gives 1."""
        t = torch.as_tensor(t, dtype=torch.int64).reshape(-1)
        if (t < -1).any() or (t >= self.T).any():
            raise ValueError(f"timesteps must lie in [-1, {self.T - 1}], got {t.tolist()}")
        ab = self._ab_padded[t.cpu() + 1]
        return ab.reshape(-1, *([1] * (like.dim() - 1))).to(device=like.device, dtype=like.dtype)

    def timesteps(self, steps: int) -> list[int]:
        """Respaced timesteps ``tau_N > ... > tau_1``: ``steps`` evenly spaced integers
        from ``T-1`` down to 0 (guided-diffusion's ``space_timesteps``)."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must be in [1, {self.T}], got {steps}")
        if steps == 1:
            return [self.T - 1]
        grid = torch.linspace(0, self.T - 1, steps, dtype=torch.float64).round().long()
        return grid.flip(0).tolist()

    def pairs(self, steps: int) -> list[tuple[int, int]]:
        """``(t, t_prev)`` for each reverse step; the last ``t_prev`` is -1 (clean)."""
        ts = self.timesteps(steps)
        return list(zip(ts, ts[1:] + [-1]))

    # --- forward process and conversions -----------------------------------------

    def q_sample(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``."""
        ab = self.ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def eps_to_x0(self, x_t: Tensor, eps: Tensor, t: Tensor | int) -> Tensor:
        ab = self.ab(t, x_t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def x0_to_eps(self, x_t: Tensor, x0: Tensor, t: Tensor | int) -> Tensor:
        ab = self.ab(t, x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def eps_to_score(self, eps: Tensor, t: Tensor | int) -> Tensor:
        return -eps / (1 - self.ab(t, eps)).sqrt()

    def score_to_eps(self, score: Tensor, t: Tensor | int) -> Tensor:
        return -score * (1 - self.ab(t, score)).sqrt()

    # --- reverse steps -------------------------------------------------------------

    def reverse_mean_std(
        self, x_t: Tensor, x0_hat: Tensor, t: int, t_prev: int, eta: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Mean and std of the DDIM(eta) transition ``p(x_{t_prev} | x_t)``.

        ``sigma = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev)``,
        ``mu = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps``, with ``eps``
        implied by ``(x_t, x0_hat)``.  For ``eta = 1`` this is the ancestral (DDPM)
        step ``mu = c0 x0_hat + c1 x_t``, ``sigma^2 = beta' (1 - ab_prev) / (1 - ab_t)``.
        Returns ``sigma`` as a tensor broadcastable against ``x_t``.
        """
        ab_t = self.ab(t, x_t)
        ab_prev = self.ab(t_prev, x_t)
        eps = (x_t - ab_t.sqrt() * x0_hat) / (1 - ab_t).sqrt()
        var = eta**2 * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        mu = ab_prev.sqrt() * x0_hat + (1 - ab_prev - var).clamp_min(0).sqrt() * eps
        return mu, var.sqrt()

    def score_step_factor(self, t: int, t_prev: int) -> float:
        """``sqrt(alpha'_t) / beta'_t`` for the step ``t -> t_prev``: since the reverse mean
        is ``mu = (x_t + beta' s(x_t)) / sqrt(alpha')``, shifting ``mu`` by ``-zeta g``
        shifts the implied score by ``-zeta * sqrt(alpha') / beta' * g``."""
        ab_t = float(self._ab_padded[t + 1])
        alpha = ab_t / float(self._ab_padded[t_prev + 1])
        return math.sqrt(alpha) / (1 - alpha)
