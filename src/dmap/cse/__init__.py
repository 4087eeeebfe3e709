"""Conditional score estimators (CSE): adapters on a frozen prior, one per (prior, task).

Shipped adapters live in ``dmap/assets/cse/<prior>-<task>.safetensors``; train your own
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
    check_adaptable,
    condition,
    load_cse,
)
from dmap.priors.base import Prior
from dmap.shipped import shipped_cse


def find_cse(prior: Prior, task: str, reference: bool = False, sigma_y: float | None = None) -> CSE:
    """The shipped adapter (or ``reference``) for ``(prior.name, task)``, checked against
    ``sigma_y`` when given; ``ValueError`` naming what exists if none."""
    found = shipped_cse(reference)
    if (prior.name, task) not in found:
        have = ", ".join(f"{p}/{t}" for p, t in found) or "none"
        kind = "reference conditional score estimator" if reference else "conditional score estimator"
        raise ValueError(
            f"no shipped {kind} for prior {prior.name!r} and task {task!r} "
            f"(shipped: {have}); train one with `dmap train-cse` and pass --cse FILE"
        )
    return load_cse(prior, found[(prior.name, task)], task, sigma_y)


def get_cse(prior: Prior, task: str, path: str | Path | None = None, sigma_y: float | None = None) -> CSE:
    """The adapter at ``path`` (checked against ``prior``, ``task`` and ``sigma_y``), or the shipped one."""
    return load_cse(prior, path, task, sigma_y) if path else find_cse(prior, task, sigma_y=sigma_y)


__all__ = [
    "CSE",
    "Adapter",
    "AdapterMeta",
    "ConditionedPrior",
    "adapter_for",
    "check_adaptable",
    "condition",
    "find_cse",
    "get_cse",
    "load_cse",
    "shipped_cse",
]
