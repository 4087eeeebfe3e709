"""Priors: the protocol, the registry of shipped priors and ``load_prior``."""

from __future__ import annotations

from collections.abc import Callable

from dmap.priors.base import Prior
from dmap.priors.gmm import GaussianMixture, GMMPrior, load_gmm_mnist

PRIORS: dict[str, tuple[Callable[[], Prior], str]] = {
    "gmm-mnist": (load_gmm_mnist, "exact Gaussian mixture (20 components) fitted on the bundled digits, 1 x 32 x 32"),
}
DEFAULT_PRIOR = "gmm-mnist"


def load_prior(name: str = DEFAULT_PRIOR) -> Prior:
    """Load a shipped prior by name (see ``PRIORS``)."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose from {', '.join(PRIORS)}")
    return PRIORS[name][0]().eval()


__all__ = ["Prior", "GaussianMixture", "GMMPrior", "PRIORS", "DEFAULT_PRIOR", "load_prior"]
