"""MCGdiff: Monte Carlo guided diffusion for Bayesian linear inverse problems (Cardoso,
Janati, Le Corff, Moulines, ICLR 2024, arXiv 2308.07983): sequential Monte Carlo in the
operator's SVD, exact as the particles grow.  No gradient goes through the network.

In the spectral coordinates ``c = V^T x`` (orthonormal: the diffusion is the same there) the
observed coordinates ``i <= m`` carry ``y_bar_i = (U^T y)_i / s_i = c0_i + (sigma_y / s_i) n``.
That is ``c0_i`` noised to the level ``sigma_y / s_i``: coordinate ``i`` is treated as the state
at ``tau_i``, the grid time whose ``(1 - ab) / ab`` is nearest ``(sigma_y / s_i)^2`` (``-1``, the
clean image, for noiseless ones), ``y_hat_i = sqrt(ab_tau_i) y_bar_i``.  While ``t >= tau_i`` the
coordinate is held near it by the potential
``g_t(c_i) = N(c_i; sqrt(ab_t / ab_tau) y_hat_i, v_t)``, ``v_t = 1 - (1 - kappa) ab_t / ab_tau``.
For each step ``t -> t'`` with the ancestral mean ``mu`` and std ``s`` (one evaluation,
no gradient)::

    log w  = sum_{active at t'} log N(mu_i; obs_t'_i, s^2 + v_t') - sum_{active at t} log g_t(c_i)
    ancestors ~ w                                                  (per measurement)
    free coordinates:   c'_i = mu_i + s z_i
    active at t':       c'_i = K obs_t'_i + (1 - K) mu_i + sqrt(v_t' K) z_i,   K = s^2 / (s^2 + v_t')

(the exact product of the transition and the next potential); a coordinate leaving its
potential (``t' < tau_i``) divides the weight by it, as at the end each particle is weighted
by ``1 / g`` of the coordinates still held, and one is drawn per measurement.  The product of
the weights telescopes to the prior's path law on paths that pass through the observed
coordinates at their ``tau``: ``p(x0 | c_tau = y_hat)``, the posterior (exact as
``kappa -> 0`` and the particles grow).  ``P`` particles: ``N P`` evaluations per sample.  Argument
names: P -> ``particles``, kappa -> ``kappa``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.schedule import step_pairs
from dmap.solvers.base import Method, ParticleOptions, register
from dmap.solvers.common import Callback, check_state, draw_per_measurement


@dataclass(frozen=True)
class MCGdiffOptions(ParticleOptions):
    """``particles`` (P) per measurement, ``kappa`` the variance that keeps a held
    coordinate's potential proper, ``eta`` of the DDIM step (1: ancestral)."""

    steps: int = 100
    spacing: str = "karras"  # dense at low noise, where the observed coordinates are released
    kappa: float = 1e-4
    eta: float = 1.0
    needs: ClassVar[tuple[str, ...]] = ("svd", "gaussian")


def _log_normal(x: Tensor, mean: Tensor, var: Tensor, mask: Tensor) -> Tensor:
    """``sum_i mask_i log N(x_i; mean_i, var_i)`` over the last axis (constants kept: the
    masks differ between the numerator and the denominator of a weight)."""
    return -0.5 * (mask * ((x - mean) ** 2 / var + var.log())).sum(-1)


def solve_mcgdiff(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: MCGdiffOptions = MCGdiffOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Sample ``p(x | y)`` with MCGdiff along the time ``grid`` (``physics`` with an SVD and
    Gaussian noise): one sample per measurement, images ``[B, C, H, W]`` in [-1, 1]."""
    B, P, schedule, kappa = y.shape[0], options.particles, denoiser.schedule, options.kappa
    s = physics.singular_values().to(y).double()
    m, pairs = s.numel(), step_pairs(grid)
    times = [t for t, _ in pairs] + [-1]
    ab = torch.cat([schedule.ab(t, y).reshape(1) for t in times])  # float64, the grid's own
    level = ((physics.sigma_y.to(y).double()[:, None] / s[None, :].clamp_min(1e-12)) ** 2)[..., None]  # [B, m, 1]
    tau = (((1 - ab) / ab)[None, None, :].sqrt() - level.sqrt()).abs().argmin(-1)  # grid index of each tau_i, [B, m]
    y_hat = ab[tau].sqrt() * physics.UT(y).double() / s.clamp_min(1e-12)

    def held(j: int) -> tuple[Tensor, Tensor, Tensor]:
        """At grid index ``j``: which coordinates are held ``[B, 1, m]``, their targets and variances."""
        rho = (ab[j] / ab[tau]).clamp_max(1.0)
        return (j <= tau).double()[:, None], (rho.sqrt() * y_hat)[:, None], (1 - (1 - kappa) * rho)[:, None]

    x = randn((B, P, *denoiser.shape), generator, y).reshape(B * P, *denoiser.shape)
    c = physics.VT(x).double()
    for i, (t, t_prev) in enumerate(pairs):
        with torch.no_grad():
            mu, sigma = schedule.reverse_mean_std(x, denoiser.x0(x, t), t, t_prev, options.eta)
        cm, var = physics.VT(mu).double().reshape(B, P, -1), float(sigma.reshape(-1)[0]) ** 2
        (on, obs, v), (on_next, obs_next, v_next) = held(i), held(i + 1)
        log_w = _log_normal(cm[..., :m], obs_next, var + v_next, on_next)
        if i > 0:  # (the particles start from p_T itself, not from p_T g_T: nothing to divide at the first step)
            log_w = log_w - _log_normal(c.reshape(B, P, -1)[..., :m], obs, v, on)
        cm = torch.gather(cm, 1, draw_per_measurement(log_w, generator, P).to(cm.device)[..., None].expand_as(cm))
        z = randn((B, P, c.shape[1]), generator, cm)
        c = cm + var**0.5 * z
        gain = var / (var + v_next)
        pinned = gain * obs_next + (1 - gain) * cm[..., :m] + (v_next * gain).sqrt() * z[..., :m]
        c[..., :m] = torch.where(on_next.bool(), pinned, c[..., :m])
        c = c.reshape(B * P, -1)
        x = physics.V(c.to(y.dtype))  # (the image of the new particles: checked, reported and denoised next)
        check_state(x, "mcgdiff", i, t, float(P))
        if callback is not None:
            callback({"step": i, "t": t, "x": x})
    on, obs, v = held(len(pairs))
    pick = draw_per_measurement(-_log_normal(c.reshape(B, P, -1)[..., :m], obs, v, on), generator, 1).reshape(-1)
    return physics.image(physics.V(c.reshape(B, P, -1)[torch.arange(B), pick.to(c.device)].to(y.dtype)))


register(Method("mcgdiff", solve_mcgdiff, MCGdiffOptions, "Monte Carlo guided diffusion, SMC in the SVD (Cardoso et al. 2024)"))
