"""Pieces shared by the solvers: the likelihood gradient (per-sample norm), the sphere
projection and the guard against non-finite values."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dmap.operators.base import Operator

Callback = Callable[[dict], None] | None


class NonFiniteError(FloatingPointError):
    """A solver produced NaN or Inf; the message names the step and the step size."""


def residual_norm(operator: Operator, y: Tensor, x0_hat: Tensor, clamp: bool = True) -> Tensor:
    """``L_i = ||y_i - A(x0_hat_i)||`` per sample ``[B]`` (the norm, not its square, as in
    the DPS reference; ``x0_hat`` clamped to [-1, 1] first when ``clamp``)."""
    x0 = x0_hat.clamp(-1, 1) if clamp else x0_hat
    return (y - operator.A(x0)).reshape(y.shape[0], -1).norm(dim=1)


def measurement_grad(
    x: Tensor, x0_hat: Tensor, operator: Operator, y: Tensor, clamp: bool = True
) -> tuple[Tensor, Tensor]:
    """``g = grad_x sum_i L_i`` (so ``g_i = grad_{x_i} L_i``: samples stay independent)
    and the residual norms ``L [B]``; ``x0_hat`` must be a differentiable function of ``x``."""
    residual = residual_norm(operator, y, x0_hat, clamp)
    (g,) = torch.autograd.grad(residual.sum(), x)
    return g, residual.detach()


def per_sample_norm(v: Tensor) -> Tensor:
    """``||v_i||`` shaped ``[B, 1, 1, 1]`` for broadcasting."""
    return v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))


def project_to_sphere(x: Tensor, center: Tensor, radius: Tensor | float) -> Tensor:
    """``center + radius (x - center) / ||x - center||`` per sample: the closest point
    of the sphere of ``radius`` around ``center``."""
    d = x - center
    return center + radius * d / per_sample_norm(d).clamp_min(torch.finfo(x.dtype).tiny)


def check_finite(x: Tensor, method: str, step: int, t: int, step_size: float) -> None:
    """Raise :class:`NonFiniteError` if ``x`` holds NaN or Inf."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(
            f"{method}: non-finite values at step {step} (t={t}) with step size {step_size:g} "
            f"in samples {bad}; try a smaller step size"
        )
