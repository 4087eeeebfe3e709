"""Priors: the protocol and its implementations (the named, shipped priors and
``load_prior`` live in :mod:`dmap.catalogue`)."""

from __future__ import annotations

from dmap.priors.base import Prior
from dmap.priors.gmm import GaussianMixture, GMMPrior
from dmap.priors.network import NetworkPrior
from dmap.priors.unet import PriorConfig, UNet, UNetConfig, load_unet_prior

__all__ = ["Prior", "GaussianMixture", "GMMPrior", "PriorConfig", "UNet", "UNetConfig", "NetworkPrior", "load_unet_prior"]
