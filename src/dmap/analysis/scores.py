"""Score estimates of ``grad log p_t(x_t | y)`` and how far they are from valid scores.

For ``(x0, y)`` drawn jointly and ``x_t ~ q(x_t | x0)``, ``x_t`` is a sample of
``p_t(x_t | y)``.  A valid conditional score has zero mean under that distribution;
with the Gaussian-mixture prior the exact conditional score is known in closed form.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dmap.operators.base import Operator
from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.priors.gmm import GaussianMixture
from dmap.schedule import Schedule
from dmap.solvers.common import measurement_grad


def exact_posterior_xt(
    post: GaussianMixture, schedule: Schedule, t: int, n: int, generator: torch.Generator | None = None
) -> Tensor:
    """``n`` exact samples ``[n, d]`` (float64) of ``p_t(x_t | y)``: ``x0 ~ p(x0 | y)``, then
    ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) e``."""
    x0 = post.sample(n, generator)
    e = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return schedule.q_sample(x0, t, e)


def unconditional_score(prior: Prior, x_t: Tensor, t: int) -> Tensor:
    """The prior's score ``s(x_t)``, which ignores ``y``."""
    return prior.score(x_t, t)


def dps_score(
    prior: Prior, operator: Operator, y: Tensor, x_t: Tensor, t: int, t_prev: int, step_size: float, clamp: bool = True
) -> Tensor:
    """DPS's implied conditional score at the step ``t -> t_prev`` taken with the step size
    ``step_size`` (zeta_i of that step, :meth:`dmap.solvers.base.StepSizeOptions.zeta`):
    ``s(x_t) - zeta_i sqrt(alpha'_t) / beta'_t grad_{x_t} ||y - A(x0_hat(x_t))||``."""
    x = x_t.detach().requires_grad_(True)
    g, _ = measurement_grad(x, prior.x0(x, t), Physics(operator), y, clamp)
    return prior.score(x_t, t) - step_size * prior.schedule.score_step_factor(t, t_prev) * g


def score_error(estimate: Tensor, reference: Tensor) -> Tensor:
    """``||s - s_ref||^2 / n`` per sample ``[B]``."""
    return ((estimate - reference) ** 2).reshape(len(estimate), -1).mean(1)


def mean_test(scores: Tensor) -> dict:
    """The empirical mean of score samples ``[N, ...]`` against its Monte-Carlo error.

    Returns ``norm`` (``||mean||``), ``se`` (``sqrt(sum_i var_i / N)``, the norm the
    mean would have by chance if the true mean were zero) and ``z = norm / se``; a valid
    score gives ``z`` near 1, a biased one a large ``z``."""
    s = scores.reshape(len(scores), -1).double()
    norm = float(s.mean(0).norm())
    se = math.sqrt(float(s.var(0).sum()) / len(s))
    return {"norm": norm, "se": se, "z": norm / se if se > 0 else math.inf}
