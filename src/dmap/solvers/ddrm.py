"""DDRM: denoising diffusion restoration models (Kawar et al., NeurIPS 2022, Eq. 7-8), for
operators with an SVD ``A = U diag(s) V^T``.

In the variance-exploding scale ``x~_t = x_t / sqrt(ab_t)`` with ``sigma_t^2 = (1 - ab_t) / ab_t``
and in the spectral coefficients ``c = V^T x~``, ``y_bar = diag(s)^-1 U^T y``, each step
``t -> t'`` takes ``c0 = V^T x0_hat(x_t, t)`` (1 evaluation, no gradient) and draws

    unobserved (s_i = 0):          c'_i = c0_i + sqrt(1 - eta^2) sigma_t' (c_i - c0_i) / sigma_t + eta sigma_t' z
    s_i > 0, sigma_t' < sigma_y/s_i: c'_i = c0_i + sqrt(1 - eta^2) sigma_t' (y_bar_i - c0_i) s_i / sigma_y + eta sigma_t' z
    s_i > 0, otherwise:            c'_i = (1 - eta_b) c0_i + eta_b y_bar_i + sqrt(sigma_t'^2 - eta_b^2 sigma_y^2 / s_i^2) z

then ``x_t' = sqrt(ab_t') V c'``.  The start is the paper's ``q(x_T | y)`` (eq. 7 at ``t = T``,
as in its reference code), not pure noise:

    s_i sigma_T > sigma_y:  c_i = y_bar_i + sqrt(sigma_T^2 - sigma_y^2 / s_i^2) z,   otherwise  c_i = sigma_T z.

At the last step ``sigma_t' = 0``: noiseless
measurements are then met exactly (``eta_b = 1``).  Argument names: eta -> ``eta``,
eta_b -> ``eta_b``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.schedule import step_pairs
from dmap.solvers.base import Method, Options, register
from dmap.solvers.common import Callback, check_state


@dataclass(frozen=True)
class DDRMOptions(Options):
    """``eta`` weighs fresh noise against the deterministic part, ``eta_b`` pulls the
    observed coefficients towards the measurement (the paper's 0.85 and 1)."""

    steps: int = 20
    eta: float = 0.85
    needs: ClassVar[tuple[str, ...]] = ("svd", "gaussian")
    eta_b: float = 1.0

    def check(self) -> None:
        super().check()
        for name in ("eta", "eta_b"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


def ddrm_step(
    c: Tensor,
    c0: Tensor,
    y_bar: Tensor,
    s: Tensor,
    sigma_t: float,
    sigma_next: float,
    sigma_y: Tensor,
    z: Tensor,
    options: DDRMOptions,
) -> Tensor:
    """The coefficients ``c'`` at ``t'`` from ``c`` at ``t`` (module docstring); ``c, c0, z
    [B, d]``, ``y_bar [B, m]`` and ``s [m]`` for the first ``m`` coefficients, ``sigma_y [B]``."""
    m = s.numel()
    eta, eta_b = options.eta, options.eta_b
    keep = (1 - eta**2) ** 0.5 * sigma_next
    out = c0 + keep * (c - c0) / sigma_t + eta * sigma_next * z  # unobserved coefficients
    observed = s > 0
    noise_level = sigma_y[:, None] / s.clamp_min(torch.finfo(s.dtype).tiny)  # sigma_y / s_i, [B, m]
    quiet = (sigma_next < noise_level) & observed
    towards_y = (
        c0[:, :m] + keep * (y_bar - c0[:, :m]) / noise_level.clamp_min(torch.finfo(s.dtype).tiny) + (eta * sigma_next * z[:, :m])
    )
    var = (sigma_next**2 - eta_b**2 * noise_level**2).clamp_min(0)
    at_y = (1 - eta_b) * c0[:, :m] + eta_b * y_bar + var.sqrt() * z[:, :m]
    head = torch.where(quiet, towards_y, torch.where(observed, at_y, out[:, :m]))
    return torch.cat([head, out[:, m:]], dim=1)


def ddrm_start(y_bar: Tensor, s: Tensor, sigma_T: float, sigma_y: Tensor, z: Tensor) -> Tensor:
    """The coefficients ``c`` at the first noise level ``sigma_T`` drawn from ``q(x_T | y)``
    (module docstring); ``z [B, d]`` standard normal, ``y_bar [B, m]``, ``s [m]``, ``sigma_y [B]``."""
    m = s.numel()
    level = sigma_y[:, None] / s.clamp_min(torch.finfo(s.dtype).tiny)
    observed = sigma_T > level
    head = torch.where(observed, y_bar + (sigma_T**2 - level**2).clamp_min(0).sqrt() * z[:, :m], sigma_T * z[:, :m])
    return torch.cat([head, sigma_T * z[:, m:]], dim=1)


def solve_ddrm(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: DDRMOptions = DDRMOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Solve ``y = A(x) + n`` with DDRM along the time ``grid`` (``physics`` with an SVD and
    its noise std per sample); returns the images ``[B, C, H, W]`` in [-1, 1]."""
    schedule = denoiser.schedule
    s = physics.singular_values().to(y)
    y_bar = physics.UT(y) / s.clamp_min(torch.finfo(s.dtype).tiny)
    sigma_y = physics.sigma_y.to(y)
    ab_T = float(schedule.alpha_bar[int(grid[0])])
    z = randn((y.shape[0], math.prod(denoiser.shape)), generator, y)
    x = ab_T**0.5 * physics.V(ddrm_start(y_bar, s, ((1 - ab_T) / ab_T) ** 0.5, sigma_y, z))
    for i, (t, t_prev) in enumerate(step_pairs(grid)):
        with torch.no_grad():
            x0_hat = denoiser.x0(x, t)
            ab, ab_next = float(schedule.alpha_bar[t]), 1.0 if t_prev < 0 else float(schedule.alpha_bar[t_prev])
            sigma_t, sigma_next = ((1 - ab) / ab) ** 0.5, ((1 - ab_next) / ab_next) ** 0.5
            c = physics.VT(x) / ab**0.5
            z = randn(c.shape, generator, c)
            c_next = ddrm_step(c, physics.VT(x0_hat), y_bar, s, sigma_t, sigma_next, sigma_y, z, options)
            x = ab_next**0.5 * physics.V(c_next)
        check_state(x, "ddrm", i, t, options.eta)
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "x0_hat": x0_hat})
    return physics.image(x)


register(Method("ddrm", solve_ddrm, DDRMOptions, "denoising diffusion restoration in the SVD (Kawar et al. 2022)"))
