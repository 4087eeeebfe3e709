"""Conditional score estimators (CSE): adapters on a frozen prior, one per (prior, task).

Shipped adapters live in ``dmap/assets/cse/<prior>-<task>.safetensors``; train your own
with ``dmap train-cse`` (:func:`dmap.train.train_cse`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dmap.cse.adapter import CSE, Adapter, ConditionedPrior, adapter_for, condition, load_cse
from dmap.priors.base import Prior


def shipped_cse() -> dict[tuple[str, str], Path]:
    """The shipped adapters, ``{(prior, task): path}``."""
    folder = Path(str(resources.files("dmap.assets").joinpath("cse")))
    return {tuple(p.stem.split("-", 1)): p for p in sorted(folder.glob("*.safetensors"))} if folder.is_dir() else {}


def find_cse(prior: Prior, task: str) -> CSE:
    """The shipped adapter for ``(prior.name, task)``; ``ValueError`` naming what exists if none."""
    found = shipped_cse()
    if (prior.name, task) not in found:
        have = ", ".join(f"{p}/{t}" for p, t in found) or "none"
        raise ValueError(f"no shipped conditional score estimator for prior {prior.name!r} and task {task!r} "
                         f"(shipped: {have}); train one with `dmap train-cse` and pass --cse FILE")
    return load_cse(prior, found[(prior.name, task)], task)


__all__ = ["CSE", "Adapter", "ConditionedPrior", "adapter_for", "condition", "find_cse", "load_cse", "shipped_cse"]
