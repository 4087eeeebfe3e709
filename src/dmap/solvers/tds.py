"""Twisted Diffusion Sampler (Wu et al., NeurIPS 2023, arXiv 2306.17775, Alg. 1): sequential
Monte Carlo over the reverse process, asymptotically exact as the particles grow.

For each measurement, ``P`` particles.  With the twisting function (a DPS-like guess of the
likelihood of ``x_t``) ``log p~_t(x_t) = -||y - A(x0_hat(x_t, t))||^2 / (2 v_t)``,
``v_t = max(sigma_y, min_sigma)^2 + (1 - ab_t)`` (``v = sigma_y^2`` at ``t = -1``: the exact
likelihood), for ``t = tau_N .. tau_1``::

    resample the particles by their weights (when the effective sample size < ess P)
    mu, s_t  = ancestral step at (x_t, x0_hat)                   (x0_hat from the twist at t)
    x_t'     ~ q = N(mu + s_t^2 grad log p~_t(x_t), s_t^2)          (the twisted proposal; the shift
                                                                    capped at max_shift s_t sqrt(n))
    log w   += log N(x_t'; mu, s_t^2) - log q(x_t') + log p~_t'(x_t') - log p~_t(x_t)

starting from ``log w = log p~_T(x_T)``; one particle per measurement is returned, drawn by
the final weights.  One network evaluation with gradient per particle and step:
``N P`` evaluations per sample.  Argument names: P -> ``particles``, ``ess`` the
resampling threshold (0: never; then importance sampling), N -> ``steps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.schedule import step_pairs
from dmap.solvers.base import Method, ParticleOptions, register
from dmap.solvers.common import Callback, check_state, draw_per_measurement, effective_size, per_sample_norm


@dataclass(frozen=True)
class TDSOptions(ParticleOptions):
    """``particles`` (P) per measurement, resampling below ``ess`` P effective particles,
    ``min_sigma`` the least noise std the twisting function assumes (noiseless tasks),
    ``max_shift`` the largest proposal shift in units of the transition noise's norm
    ``s_t sqrt(n)`` (a network's Jacobian at high noise can make ``s_t^2 grad`` huge; the
    weights use the shift taken, so the sampler stays exact)."""

    steps: int = 100
    spacing: str = "karras"  # dense at low noise, where the particles' weights separate most
    ess: float = 0.5
    min_sigma: float = 0.01
    max_shift: float = 1.0

    def check(self) -> None:
        super().check()
        if not 0 <= self.ess <= 1:
            raise ValueError(f"ess must lie in [0, 1], got {self.ess}")


def _twist(denoiser: Prior, physics: Physics, y: Tensor, x: Tensor, t: int, var: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``log p~_t(x)`` ``[B P]``, its gradient and ``x0_hat``; ``var [B P]`` is ``v_t``."""
    x = x.detach().requires_grad_(True)
    x0_hat = denoiser.x0(x, t)
    log_twist = -(y - physics.measure(x0_hat, clamp=False)).reshape(len(x), -1).pow(2).sum(1) / (2 * var)
    (g,) = torch.autograd.grad(log_twist.sum(), x)
    return log_twist.detach(), g, x0_hat.detach()


def _resample(log_w: Tensor, generator: Generators, ess: float) -> tuple[Tensor, Tensor]:
    """Per measurement ``[B, P]``: the measurements whose effective sample size fell below
    ``ess P`` draw their particles again by the weights (their weights reset), the others
    keep theirs.  Returns indices into the flat particles and the new log-weights."""
    B, P = log_w.shape
    low = (effective_size(log_w) < ess * P).nonzero().flatten().tolist()
    idx, log_w = torch.arange(P).repeat(B, 1), log_w.clone()
    if low:
        gens = generator if isinstance(generator, list | tuple) else [generator] * B
        idx[low] = draw_per_measurement(log_w[low], [gens[b] for b in low], P)
        log_w[low] = 0
    return (idx + P * torch.arange(B)[:, None]).reshape(-1).to(log_w.device), log_w


def solve_tds(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: TDSOptions = TDSOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Sample ``p(x | y)`` with TDS along the time ``grid``: one sample per measurement, as
    images ``[B, C, H, W]`` in [-1, 1]."""
    B, P, schedule = y.shape[0], options.particles, denoiser.schedule
    ys = y.repeat_interleave(P, 0)
    noise2 = physics.sigma_y.to(y).clamp_min(options.min_sigma).repeat_interleave(P, 0) ** 2
    x = randn((B, P, *denoiser.shape), generator, y).reshape(B * P, *denoiser.shape)
    steps = step_pairs(grid)
    log_twist, g, x0_hat = _twist(denoiser, physics, ys, x, steps[0][0], noise2 + 1 - float(schedule.ab(steps[0][0], y)))
    log_w = log_twist.reshape(B, P)
    for i, (t, t_prev) in enumerate(steps):
        idx, log_w = _resample(log_w, generator, options.ess)
        x, log_twist, g, x0_hat = x[idx], log_twist[idx], g[idx], x0_hat[idx]
        mu, sigma = schedule.reverse_mean_std(x, x0_hat, t, t_prev, 1.0)
        shift = sigma**2 * g
        cap = options.max_shift * sigma.reshape(-1) * math.sqrt(math.prod(denoiser.shape))
        shift = shift * (cap / per_sample_norm(shift).reshape(-1).clamp_min(1e-30)).clamp_max(1.0).reshape(-1, *[1] * (x.dim() - 1))
        z = randn((B, P, *denoiser.shape), generator, y).reshape(x.shape)
        x = mu + shift + sigma * z
        unguided = mu + sigma * z
        # log N(x; mu, s^2) - log N(x; mu + shift, s^2) = (|sigma z|^2 - |shift + sigma z|^2) / (2 s^2)
        ratio = ((sigma * z).pow(2) - (shift + sigma * z).pow(2)).reshape(len(x), -1).sum(1) / (
            2 * sigma.reshape(-1) ** 2
        ).clamp_min(1e-30)
        var = noise2 + (1 - float(schedule.ab(t_prev, y)))
        if t_prev >= 0:
            new_twist, g, x0_hat = _twist(denoiser, physics, ys, x, t_prev, var)
        else:  # the exact likelihood of the clean image
            new_twist = -(ys - physics.measure(x, clamp=False)).reshape(len(x), -1).pow(2).sum(1).detach() / (2 * var)
        log_w = log_w + (ratio + new_twist - log_twist).reshape(B, P)
        log_twist = new_twist
        check_state(x, "tds", i, t, float(P), unguided)
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "x0_hat": x0_hat, "ess": effective_size(log_w)})
    pick = draw_per_measurement(log_w, generator, 1).reshape(-1)
    return physics.image(x.reshape(B, P, *denoiser.shape)[torch.arange(B), pick.to(x.device)])


register(Method("tds", solve_tds, TDSOptions, "twisted diffusion sampler, SMC over particles (Wu et al. 2023)"))
