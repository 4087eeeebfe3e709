"""Unconditional sampling from a prior: the reverse process alone.

For ``t = tau_N .. tau_1``: ``x_prev = mu(x_t, x0_hat(x_t, t)) + sigma_t z`` with the
DDIM(eta) step (eta = 1: ancestral DDPM, eta = 0: deterministic DDIM).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.schedule import step_pairs
from dmap.solvers.common import Callback


@torch.no_grad()
def reverse_process(
    denoiser: Prior, x: Tensor, grid: Tensor, eta: float = 1.0, *, generator: Generators = None, callback: Callback = None
) -> Tensor:
    """The reverse process from ``x = x_{tau_N}`` along the time ``grid``: the final state."""
    for i, (t, t_prev) in enumerate(step_pairs(grid)):
        x0_hat = denoiser.x0(x, t)
        mu, sigma = denoiser.schedule.reverse_mean_std(x, x0_hat, t, t_prev, eta)
        x = mu + sigma * randn(x.shape, generator, x)
        if callback is not None:
            callback({"step": i, "t": t, "x": x, "x0_hat": x0_hat})
    return x


@torch.no_grad()
def sample_prior(
    prior: Prior,
    n: int,
    *,
    steps: int = 250,
    eta: float = 1.0,
    spacing: str = "uniform",
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """``n`` images ``[n, *prior.image_shape]`` in [-1, 1] sampled from ``prior`` with ``steps``
    reverse steps (a latent prior's samples decoded, ``D(z)``)."""
    x = randn((n, *prior.shape), generator, torch.empty(0, device=prior.device))
    grid = torch.tensor(prior.schedule.timesteps(steps, spacing))
    x = reverse_process(prior, x, grid, eta, generator=generator, callback=callback)
    return prior.decode(prior.clip(x)).clamp(-1, 1)
