"""Pieces shared by the solvers: the likelihood gradient (per-sample norm), the sphere
projection and the guard against non-finite values."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dmap.operators.base import Operator
from dmap.operators.physics import Physics

Callback = Callable[[dict], None] | None


class SolveError(ArithmeticError):
    """A solve that failed: it produced NaN/Inf or diverged from the measurement."""


class NonFiniteError(SolveError, FloatingPointError):
    """A solver produced NaN or Inf; the message names the step and the step size."""


class DivergenceError(SolveError):
    """An iterate far outside the range of the data (see :func:`check_state`)."""


# Images lie in [-1, 1] and x_t = sqrt(ab) x0 + sqrt(1 - ab) e has an RMS near 1, so an
# iterate whose per-sample RMS exceeds DIVERGED_RMS has left the data: measured on the
# shipped priors (six tasks, dps / dsg / dmap with their presets at 20-100 steps), the
# largest RMS of any iterate was 2.4; with a step size 30x too large it was 15-12,000.
DIVERGED_RMS = 5.0
# A guided method also passes the state its step would reach without the guidance: only a
# sample that the guidance took past DIVERGED_RMS *and* past GUIDED_FACTOR times that state's
# RMS counts, so a poorly trained network (a random-weight Stable Diffusion's first step
# reaches an RMS of 16 alone) is not called a diverged guidance.
GUIDED_FACTOR = 2.0


def residual_norm(physics: Physics, y: Tensor, x0_hat: Tensor, clamp: bool = True) -> Tensor:
    """``L_i = ||y_i - A(x0_hat_i)||`` per sample ``[B]`` (the norm, not its square, as in
    the DPS reference; the estimate's image clipped to [-1, 1] first when ``clamp``)."""
    return (y - physics.measure(x0_hat, clamp)).reshape(y.shape[0], -1).norm(dim=1)


def measurement_grad(x: Tensor, x0_hat: Tensor, physics: Physics, y: Tensor, clamp: bool = True) -> tuple[Tensor, Tensor]:
    """``g = grad_x sum_i L_i`` (so ``g_i = grad_{x_i} L_i``: samples stay independent)
    and the residual norms ``L [B]``; ``x0_hat`` must be a differentiable function of ``x``."""
    residual = residual_norm(physics, y, x0_hat, clamp)
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


def check_state(x: Tensor, method: str, step: int, t: int, step_size: float, unguided: Tensor | None = None) -> None:
    """Raise :class:`NonFiniteError` if ``x`` holds NaN or Inf, :class:`DivergenceError` if
    a sample's RMS exceeds ``DIVERGED_RMS`` (the run has left the data range) and, when
    ``unguided`` (the step without its guidance) is given, ``GUIDED_FACTOR`` times its RMS."""
    flat = x.detach().reshape(x.shape[0], -1)
    where = f"at step {step} (t={t}) with step size {step_size:g}"
    if not torch.isfinite(flat).all():
        bad = (~torch.isfinite(flat)).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(f"{method}: non-finite values {where} in samples {bad}; try a smaller step size")
    rms = flat.pow(2).mean(1).sqrt()
    over = rms > DIVERGED_RMS
    if unguided is not None:
        over &= rms > GUIDED_FACTOR * unguided.detach().reshape(len(x), -1).pow(2).mean(1).sqrt()
    if over.any():
        bad = over.nonzero().flatten().tolist()
        raise DivergenceError(
            f"{method}: diverged {where}: samples {bad} reached an RMS of {float(rms.max()):.3g} "
            f"(x_t keeps an RMS near 1: images lie in [-1, 1], latents have unit variance); try a smaller step size"
        )


def residual_rms(operator: Operator, y: Tensor, x0: Tensor) -> Tensor:
    """``||y_i - A(x0_i)|| / sqrt(m)`` per sample ``[B]``: the residual per measured value."""
    r = (y - operator.A(x0)).reshape(y.shape[0], -1)
    return r.norm(dim=1) / r.shape[1] ** 0.5


def effective_size(log_w: Tensor) -> Tensor:
    """The effective sample size ``1 / sum_k w_k^2`` of each measurement's normalized weights
    ``[B]`` (``log_w [B, P]``)."""
    return 1 / torch.softmax(log_w, dim=1).pow(2).sum(1)


def draw_per_measurement(log_w: Tensor, generator, k: int) -> Tensor:
    """``k`` particle indices per measurement ``[B, k]`` drawn by the weights ``log_w [B, P]``
    (multinomial, with replacement), measurement ``b`` with its own generator: what the
    particle samplers resample and pick with, so a batch equals its measurements alone."""
    w = torch.softmax(log_w, dim=1).cpu()
    gens = generator if isinstance(generator, list | tuple) else [generator] * len(w)
    return torch.stack([torch.multinomial(w[b], k, replacement=True, generator=gens[b]) for b in range(len(w))])
