"""Posterior fidelity: how far a method's samples lie from the exact posterior's.

PSNR of one restoration rewards leaving the posterior for its mode; where the posterior is
known in closed form (Gaussian mixtures: ``gmm-mnist`` and :func:`synthetic_problem`) these
measure the distribution itself.  For samples ``X [N, d]`` of a method and exact posterior
samples ``Z [M, d]``:

- sliced Wasserstein-2: ``SW2 = sqrt(E_u W2^2(u^T X, u^T Z))`` over ``projections`` random
  unit directions ``u`` (the same for every method of a run: ``generator``), the 1-D
  distances from sorted samples; its Monte-Carlo floor is the SW2 of two independent exact
  sets of the sizes compared (:func:`fidelity` reports both);
- energy distance ``2 E|X - Z| - E|X - X'| - E|Z - Z'|`` (unbiased within-set means);
- the RMS error of the sample mean against the exact posterior mean;
- the variance ratio ``sum_j Var(X_j) / sum_j Var(Z_j)`` (0 for a point mass, 1 exact);
- coverage of per-pixel central credible intervals: the fraction of (exact sample, pixel)
  pairs inside the method's ``level`` interval at that pixel (``level`` when exact);
- the weight the samples give each mixture component (their mean responsibility under the
  exact posterior mixture) against the exact weights, as a total-variation distance.

:func:`grid_mixture` is the synthetic family the samplers are tested on (after Cardoso et
al. 2024): 25 components on a 5 x 5 grid, in any dimension, cheap at any size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmap.priors.gmm import GaussianMixture

LEVELS = (0.5, 0.9)


def _flat(x: Tensor) -> Tensor:
    return x.reshape(len(x), -1).double()


def directions(d: int, projections: int, generator: torch.Generator | None = None) -> Tensor:
    """``projections`` random unit vectors of R^d ``[d, projections]`` (float64)."""
    u = torch.randn(d, projections, generator=generator, dtype=torch.float64)
    return u / u.norm(dim=0, keepdim=True)


def sliced_w2(x: Tensor, z: Tensor, dirs: Tensor) -> float:
    """``sqrt(mean_u W2^2(u^T x, u^T z))`` over the columns of ``dirs``; the 1-D W2 between
    empirical distributions from their quantile functions on a common grid of
    ``max(N, M)`` levels (exact when ``N = M``: the sorted samples paired)."""
    px, pz = (_flat(x) @ dirs).sort(0).values, (_flat(z) @ dirs).sort(0).values
    n = max(len(px), len(pz))
    levels = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    qx, qz = (p[(levels * len(p)).long().clamp_max(len(p) - 1)] for p in (px, pz))
    return math.sqrt(float(((qx - qz) ** 2).mean()))


def energy_distance(x: Tensor, z: Tensor) -> float:
    """``2 E|X - Z| - E|X - X'| - E|Z - Z'|`` with the within-set means over distinct pairs."""
    x, z = _flat(x), _flat(z)

    def within(a: Tensor) -> float:
        n = len(a)
        return float(torch.cdist(a, a).sum()) / (n * (n - 1))

    return 2 * float(torch.cdist(x, z).mean()) - within(x) - within(z)


def coverage(x: Tensor, z: Tensor, level: float) -> float:
    """The fraction of ``(exact sample, pixel)`` pairs of ``z`` inside the central ``level``
    interval of ``x``'s samples at that pixel."""
    x, z = _flat(x), _flat(z)
    lo, hi = torch.quantile(x, (1 - level) / 2, dim=0), torch.quantile(x, (1 + level) / 2, dim=0)
    return float(((z >= lo) & (z <= hi)).double().mean())


def component_weights(x: Tensor, posterior: GaussianMixture) -> Tensor:
    """The mean responsibility of each component of ``posterior`` over the samples ``x``
    ``[K]``: the exact weights in expectation when ``x`` is drawn from ``posterior``."""
    flat = _flat(x)
    log_n = posterior._components(flat, posterior._ab(flat, 1.0))[3]
    return torch.softmax(log_n + posterior.log_weights, dim=1).mean(0)


def fidelity(
    x: Tensor,
    exact: Tensor,
    exact_again: Tensor,
    posterior: GaussianMixture,
    *,
    projections: int = 256,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Every measure of the module for the samples ``x [N, ...]`` against exact posterior
    samples ``exact [M, ...]``; ``exact_again`` (an independent exact set of ``N`` samples)
    gives the Monte-Carlo floor of SW2 and the energy distance.  The posterior mean and
    weights come from ``posterior`` (the exact posterior mixture of this measurement)."""
    dirs = directions(_flat(x).shape[1], projections, generator)
    var_exact = float(_flat(exact).var(0).sum())
    weights = component_weights(x, posterior)
    out = {
        "sw2": sliced_w2(x, exact, dirs),
        "sw2_floor": sliced_w2(exact_again, exact, dirs),
        "energy": energy_distance(x, exact),
        "energy_floor": energy_distance(exact_again, exact),
        "mean_error": float((_flat(x).mean(0) - posterior.mean()).pow(2).mean().sqrt()),
        "variance_ratio": float(_flat(x).var(0).sum()) / var_exact,
        "weights_tv": 0.5 * float((weights - posterior.log_weights.exp()).abs().sum()),
    }
    for level in LEVELS:
        out[f"coverage_{round(100 * level)}"] = coverage(x, exact, level)
    return out


def posterior_summary(samples: Tensor, level: float = 0.9) -> dict[str, Tensor]:
    """What a user reads off ``samples [N, C, H, W]`` of one measurement's posterior (N >= 2):
    the ``mean``, the per-pixel ``std`` and the central ``level`` credible interval
    (``lower``, ``upper``: per-pixel quantiles), each ``[C, H, W]``."""
    if len(samples) < 2:
        raise ValueError(f"a posterior summary needs at least 2 samples, got {len(samples)}")
    x = samples.double()
    q = torch.quantile(x.reshape(len(x), -1), torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64), dim=0)
    lower, upper = (v.reshape(samples.shape[1:]).to(samples.dtype) for v in q)
    return {"mean": samples.mean(0), "std": samples.std(0), "lower": lower, "upper": upper}


def grid_mixture(d: int, seed: int = 0, spacing: float = 0.4, std: float = 0.05) -> GaussianMixture:
    """25 isotropic components of std ``std`` in R^d, their means ``spacing (i, j, i, j, ...)``
    for ``i, j`` in -2..2 (inside [-1, 1], as images), weights drawn from ``seed``
    (uniform(0, 1), normalized)."""
    g = torch.Generator().manual_seed(seed)
    ij = torch.tensor([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=torch.float64)
    means = spacing * ij[:, torch.arange(d) % 2]
    axis = torch.zeros(25, d, 1, dtype=torch.float64)
    axis[:, 0, 0] = 1  # one principal direction with the same variance as the rest: isotropic
    var = torch.full((25,), std**2, dtype=torch.float64)
    return GaussianMixture(torch.rand(25, generator=g, dtype=torch.float64).log(), means, axis, var[:, None], var)
