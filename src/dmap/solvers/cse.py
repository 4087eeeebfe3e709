"""The conditional score estimator as the prior step (Xu et al., ICLR 2025, Sec. 4).

``cse``: the reverse process of the estimator alone, ``x_prev = mu(x_t, x0_hat_CSE) + sigma_t z``.
``dps+cse`` / ``dmap+cse``: DPS / DMAP whose reverse-step mean uses the estimator's x0_hat.
``guide`` chooses which x0_hat feeds the likelihood gradient: ``"prior"`` (the
unconditional network, one more evaluation per DPS step) or ``"cse"`` (the estimator).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dmap.cse import CSE
from dmap.operators.base import Operator
from dmap.priors.base import Prior
from dmap.rng import Generators
from dmap.solvers.base import Method, ReverseOptions, register
from dmap.solvers.common import Callback
from dmap.solvers.dmap import DMAPOptions, solve_dmap
from dmap.solvers.dps import DPSOptions, solve_dps
from dmap.solvers.sample import sample_prior

GUIDES = ("prior", "cse")


class _Guided:
    """The ``guide`` option: which x0_hat feeds the likelihood gradient."""

    def check(self) -> None:
        super().check()
        if self.guide not in GUIDES:
            raise ValueError(f"guide must be one of {', '.join(GUIDES)}, got {self.guide!r}")


@dataclass(frozen=True)
class DPSCSEOptions(_Guided, DPSOptions):
    steps: int = 500
    guide: str = "prior"

    @property
    def step_evals(self) -> int:  # the estimator for mu, and the prior for the gradient
        return 2 if self.guide == "prior" else 1


@dataclass(frozen=True)
class DMAPCSEOptions(_Guided, DMAPOptions):
    guide: str = "prior"


def _with_cse(solver):
    def solve_with_cse(
        prior: Prior, operator: Operator, y: Tensor, options, *, cse: CSE, generator: Generators = None, callback: Callback = None
    ) -> Tensor:
        conditioned = cse.conditioned(operator, y)
        if options.guide == "cse":
            return solver(conditioned, operator, y, options, generator=generator, callback=callback)
        return solver(prior, operator, y, options, generator=generator, callback=callback, step_prior=conditioned)

    solve_with_cse.__name__ = f"{solver.__name__}_cse"
    solve_with_cse.__doc__ = f"{solver.__name__} with the conditional score estimator ``cse`` for the prior step."
    return solve_with_cse


solve_dps_cse = _with_cse(solve_dps)
solve_dmap_cse = _with_cse(solve_dmap)


def solve_cse(
    prior: Prior,
    operator: Operator,
    y: Tensor,
    options: ReverseOptions = ReverseOptions(),
    *,
    cse: CSE,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Sample ``p(x | y)`` with the estimator's reverse process alone (no likelihood step)."""
    return sample_prior(
        cse.conditioned(operator, y),
        y.shape[0],
        steps=options.steps,
        eta=options.eta,
        spacing=options.spacing,
        generator=generator,
        callback=callback,
    )


register(
    Method(
        "cse",
        solve_cse,
        ReverseOptions,
        "reverse process of the conditional score estimator alone (Xu et al. 2025)",
        linear_only=True,
        uses_cse=True,
    )
)
register(
    Method(
        "dps+cse",
        solve_dps_cse,
        DPSCSEOptions,
        "DPS with the conditional score estimator for the prior step",
        linear_only=True,
        base="dps",
        uses_cse=True,
    )
)
register(
    Method(
        "dmap+cse",
        solve_dmap_cse,
        DMAPCSEOptions,
        "DMAP with the conditional score estimator for the prior step",
        linear_only=True,
        base="dmap",
        uses_cse=True,
    )
)
