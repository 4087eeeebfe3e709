"""The conditional score estimator as the prior step (Xu et al., ICLR 2025, Sec. 4).

``cse``: the reverse process of the estimator alone, ``x_prev = mu(x_t, x0_hat_CSE) + sigma_t z``.
``dps+cse`` / ``dmap+cse``: DPS / DMAP whose reverse-step mean uses the estimator's x0_hat.
``guide`` chooses which x0_hat feeds the likelihood gradient: ``"prior"`` (the
unconditional network, one more evaluation per DPS step) or ``"cse"`` (the estimator).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from dmap.cse import CSE
from dmap.operators.base import Operator
from dmap.priors.base import Prior
from dmap.rng import Generators
from dmap.solvers.common import Callback
from dmap.solvers.dmap import solve_dmap
from dmap.solvers.dps import solve_dps
from dmap.solvers.sample import sample_prior


def _with_cse(solver: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def solve_with_cse(prior: Prior, operator: Operator, y: Tensor, *, cse: CSE, guide: str = "prior",
                       **options) -> Tensor:
        conditioned = cse.conditioned(operator, y)
        if guide == "cse":
            return solver(conditioned, operator, y, **options)
        return solver(prior, operator, y, step_prior=conditioned, **options)

    solve_with_cse.__name__ = f"{solver.__name__}_cse"
    solve_with_cse.__doc__ = f"{solver.__name__} with the conditional score estimator ``cse`` for the prior step."
    return solve_with_cse


solve_dps_cse = _with_cse(solve_dps)
solve_dmap_cse = _with_cse(solve_dmap)


def solve_cse(
    prior: Prior, operator: Operator, y: Tensor, *, cse: CSE, steps: int = 1000, eta: float = 1.0,
    generator: Generators = None, callback: Callback = None,
) -> Tensor:
    """Sample ``p(x | y)`` with the estimator's reverse process alone (no likelihood step)."""
    return sample_prior(cse.conditioned(operator, y), y.shape[0], steps=steps, eta=eta, generator=generator,
                        callback=callback)
