"""Conditional score estimators (CSE): adapters on a frozen prior, one per (prior, task, sigma_y).

Shipped adapters live in ``dmap/assets/cse/<prior>-<task>[-sigma0].safetensors`` (their
JSON records say prior, task and noise level) and are found by :mod:`dmap.catalogue`; train
your own with ``dmap train-cse`` (:func:`dmap.train.train_cse`).
"""

from __future__ import annotations

from pathlib import Path

from dmap.cse.adapter import (
    CSE,
    Adapter,
    AdapterMeta,
    ConditionedPrior,
    adapter_for,
    check_unet_prior,
    condition,
    load_adapter,
)
from dmap.cse.controlnet import ControlNetCSE, controllable, load_controlnet_cse
from dmap.priors.base import Prior


def check_adaptable(prior: Prior) -> None:
    """``ValueError`` unless an estimator can be built on ``prior``: the library's own
    UNet (an adapter) or a latent prior with a ``UNet2DConditionModel`` (a ControlNet)."""
    if not controllable(prior):
        check_unet_prior(prior)


def load_cse(prior: Prior, path: str | Path, task: str | None = None, sigma_y: float | None = None) -> CSE:
    """The estimator at ``path`` on ``prior`` (a pixel adapter ``.safetensors`` with its
    ``.json``, or a ControlNet folder for a latent prior), checked to be trained on this
    prior (and for ``task`` and ``sigma_y`` when given), frozen.  Raises
    :class:`~dmap.utils.WeightsError` on an unreadable file, ``ValueError`` on a mismatch."""
    check_adaptable(prior)
    if controllable(prior):
        cse = load_controlnet_cse(prior, path)
        cse.check(prior, task or cse.task, sigma_y)
    else:
        cse = load_adapter(prior, path, task, sigma_y)  # checked before its weights load
    return cse.eval().requires_grad_(False)


__all__ = [
    "CSE",
    "Adapter",
    "AdapterMeta",
    "ConditionedPrior",
    "ControlNetCSE",
    "adapter_for",
    "check_adaptable",
    "condition",
    "load_cse",
]
