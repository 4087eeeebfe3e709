"""Priors: the protocol, the registry of shipped priors and ``load_prior``."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from dmap.priors.base import Prior
from dmap.priors.gmm import GaussianMixture, GMMPrior, load_gmm_mnist
from dmap.priors.unet import UNetPrior, WeightsError, load_unet_prior


def load_mnist() -> UNetPrior:
    """``mnist``: the shipped UNet trained on the bundled train digits."""
    assets = resources.files("dmap.assets")
    with resources.as_file(assets.joinpath("mnist.safetensors")) as w, resources.as_file(assets.joinpath("mnist.json")) as c:
        return load_unet_prior(w, c, name="mnist")


PRIORS: dict[str, tuple[Callable[[], Prior], str]] = {
    "gmm-mnist": (load_gmm_mnist, "exact Gaussian mixture (20 components) fitted on the bundled digits, 1 x 32 x 32"),
    "mnist": (load_mnist, "UNet (1.1 M parameters) trained on the bundled digits, 1 x 32 x 32"),
}
DEFAULT_PRIOR = "mnist"


def load_prior(name: str = DEFAULT_PRIOR) -> Prior:
    """Load a shipped prior by name (see ``PRIORS``), or a UNet trained with ``dmap train``
    from its ``.safetensors`` path (its ``.json`` config beside it)."""
    if name.endswith(".safetensors"):
        return load_unet_prior(name).eval()
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose from {', '.join(PRIORS)} or a .safetensors file")
    return PRIORS[name][0]().eval()


__all__ = ["Prior", "GaussianMixture", "GMMPrior", "UNetPrior", "WeightsError", "PRIORS", "DEFAULT_PRIOR",
           "load_prior", "load_unet_prior"]
