"""The conditional score estimator as the prior step (Xu et al., ICLR 2025, Sec. 4).

``cse``: the reverse process of the estimator alone, ``x_prev = mu(x_t, x0_hat_CSE) + sigma_t z``.
``dps+cse`` / ``dmap+cse``: DPS / DMAP themselves, on a denoiser whose prior step (the
reverse-step mean) is the estimator (:meth:`dmap.cse.CSE.denoiser` wraps it, once, in
:func:`dmap.api.run_method`).  ``guide`` chooses which x0_hat feeds the likelihood
gradient: ``"prior"`` (the unconditional network, one more evaluation per DPS step) or
``"cse"`` (the estimator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from dmap.operators.physics import Physics
from dmap.priors.base import Prior
from dmap.rng import Generators, randn
from dmap.solvers.base import Method, ReverseOptions, register
from dmap.solvers.common import Callback
from dmap.solvers.dmap import DMAPOptions, solve_dmap
from dmap.solvers.dps import DPSOptions, solve_dps
from dmap.solvers.sample import reverse_process

GUIDES = ("prior", "cse")


@dataclass(frozen=True)
class CSEOptions(ReverseOptions):
    """The reverse process of the estimator: ``steps``, ``spacing``, ``eta``."""

    needs: ClassVar[tuple[str, ...]] = ("cse",)
    guide: ClassVar[str] = "cse"  # (the estimator is the whole denoiser)


class _Guided:
    """The ``guide`` option: which x0_hat feeds the likelihood gradient."""

    needs: ClassVar[tuple[str, ...]] = ("cse",)

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


def solve_cse(
    denoiser: Prior,
    physics: Physics,
    y: Tensor,
    grid: Tensor,
    options: CSEOptions = CSEOptions(),
    *,
    generator: Generators = None,
    callback: Callback = None,
) -> Tensor:
    """Sample ``p(x | y)`` with the reverse process of ``denoiser`` (the estimator, conditioned
    on ``y``) alone, no likelihood step; returns the images."""
    x = randn((y.shape[0], *denoiser.shape), generator, y)
    return physics.image(reverse_process(denoiser, x, grid, options.eta, generator=generator, callback=callback))


register(Method("cse", solve_cse, CSEOptions, "reverse process of the conditional score estimator alone (Xu et al. 2025)"))
register(Method("dps+cse", solve_dps, DPSCSEOptions, "DPS with the conditional score estimator for the prior step", base="dps"))
register(
    Method("dmap+cse", solve_dmap, DMAPCSEOptions, "DMAP with the conditional score estimator for the prior step", base="dmap")
)
