"""Conditional score estimators (CSE): adapters on a frozen prior, one per (prior, task, sigma_y).

Shipped adapters live in ``dmap/assets/cse/<prior>-<task>[-sigma0].safetensors`` (their
JSON records say prior, task and noise level); train your own
with ``dmap train-cse`` (:func:`dmap.train.train_cse`).
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
from dmap.operators.tasks import DEFAULT_SIGMA_Y
from dmap.priors.base import Prior
from dmap.shipped import shipped_cse


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


def shipped_path(prior: Prior, task: str, reference: bool = False, sigma_y: float | None = None) -> Path | None:
    """The shipped adapter (or ``reference``) for ``(prior.name, task)`` trained at noise
    ``sigma_y`` (default: the default noise level, 0.05), or None."""
    level = DEFAULT_SIGMA_Y if sigma_y is None else sigma_y
    found = shipped_cse(reference).items()
    return next((path for (p, t, s), path in found if (p, t) == (prior.name, task) and abs(s - level) < 1e-9), None)


def find_cse(prior: Prior, task: str, reference: bool = False, sigma_y: float | None = None) -> CSE:
    """The adapter at :func:`shipped_path`, loaded and checked; ``ValueError`` naming what exists if none."""
    level = DEFAULT_SIGMA_Y if sigma_y is None else sigma_y
    path = shipped_path(prior, task, reference, level)
    if path is None:
        have = ", ".join(f"{p}/{t} (sigma_y {s:g})" for p, t, s in shipped_cse(reference)) or "none"
        kind = "reference conditional score estimator" if reference else "conditional score estimator"
        raise ValueError(
            f"no shipped {kind} for prior {prior.name!r} and task {task!r} at sigma_y = {level:g} "
            f"(shipped: {have}); train one with `dmap train-cse` and pass --cse FILE"
        )
    return load_cse(prior, path, task, sigma_y)


def get_cse(prior: Prior, task: str, path: str | Path | None = None, sigma_y: float | None = None) -> CSE:
    """The adapter at ``path`` (checked against ``prior``, ``task`` and ``sigma_y``), or the shipped one."""
    return load_cse(prior, path, task, sigma_y) if path else find_cse(prior, task, sigma_y=sigma_y)


__all__ = [
    "CSE",
    "Adapter",
    "AdapterMeta",
    "ConditionedPrior",
    "ControlNetCSE",
    "adapter_for",
    "check_adaptable",
    "condition",
    "find_cse",
    "get_cse",
    "load_cse",
    "shipped_cse",
    "shipped_path",
]
